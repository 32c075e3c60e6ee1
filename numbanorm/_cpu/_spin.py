"""The thread pool's waits (:mod:`._threads`): bounded polls of shared int64 words with the
GIL released, as three tiny machine-code functions called through ``ctypes``.

Why not ``@njit(nogil=True)``: three such functions cost ~0.13 CPU s of Numba's pipeline in
every process that starts the pool with an empty cache (once per large first call of an op
in ``numbanorm bench --compile``); this LLVM IR is compiled by llvmlite's MCJIT in ~5 ms,
needs no cache and no Numba types. ``ctypes`` releases the GIL for the duration of a call
(~0.5 µs per call). Memory order: monotonic loads while polling, release stores and
read-modify-writes, so a polling thread sees a word change at once, after every store
before it. Each poll round issues x86's ``pause`` (other machines: none).

* ``poll(flag, old, rounds)``: until ``*flag != old``, at most ``rounds`` rounds; returns
  the last value read.
* ``park(box, seen, rounds, done)``: a helper between jobs: ``*done = 1``, ``box[1] = 1``
  (polling), poll ``box[0]`` (its post count) against ``seen``, then ``box[1] = 0``.
* ``post(posts, n, counter, rounds)``: a caller's launch: ``posts[2k] += 1`` for the
  ``n`` helpers given a job (rows of an ``(H, 2)`` array); if one of them was polling
  (``posts[2k + 1] == 1``), poll ``*counter`` against 0 (until a helper has taken a chunk).
"""
import ctypes
import platform

_X86 = platform.machine().lower() in ("x86_64", "amd64", "i686", "i386")

_IR = r"""
%(decl)s

define i64 @nn_poll(i64* %%flag, i64 %%old, i64 %%rounds) {
entry:
  br label %%loop
loop:
  %%k = phi i64 [0, %%entry], [%%k1, %%again]
  %%v = load atomic i64, i64* %%flag monotonic, align 8
  %%changed = icmp ne i64 %%v, %%old
  %%spent = icmp sge i64 %%k, %%rounds
  %%stop = or i1 %%changed, %%spent
  br i1 %%stop, label %%out, label %%again
again:
  %(pause)s
  %%k1 = add i64 %%k, 1
  br label %%loop
out:
  ret i64 %%v
}

define i64 @nn_park(i64* %%box, i64 %%seen, i64 %%rounds, i64* %%done) {
entry:
  store atomic i64 1, i64* %%done release, align 8
  %%flagp = getelementptr i64, i64* %%box, i64 1
  store atomic i64 1, i64* %%flagp release, align 8
  %%v = call i64 @nn_poll(i64* %%box, i64 %%seen, i64 %%rounds)
  store atomic i64 0, i64* %%flagp release, align 8
  ret i64 %%v
}

define i64 @nn_post(i64* %%posts, i64 %%n, i64* %%counter, i64 %%rounds) {
entry:
  br label %%loop
loop:
  %%k = phi i64 [0, %%entry], [%%k1, %%body]
  %%any = phi i1 [false, %%entry], [%%any1, %%body]
  %%more = icmp slt i64 %%k, %%n
  br i1 %%more, label %%body, label %%wait
body:
  %%row = mul i64 %%k, 2
  %%cp = getelementptr i64, i64* %%posts, i64 %%row
  %%row1 = add i64 %%row, 1
  %%fp = getelementptr i64, i64* %%posts, i64 %%row1
  %%f = load atomic i64, i64* %%fp monotonic, align 8
  %%isp = icmp eq i64 %%f, 1
  %%any1 = or i1 %%any, %%isp
  %%old = atomicrmw add i64* %%cp, i64 1 release
  %%k1 = add i64 %%k, 1
  br label %%loop
wait:
  br i1 %%any, label %%poll, label %%out
poll:
  %%v = call i64 @nn_poll(i64* %%counter, i64 0, i64 %%rounds)
  ret i64 %%v
out:
  ret i64 0
}
""" % {
    "decl": "declare void @llvm.x86.sse2.pause()" if _X86 else "",
    "pause": "call void @llvm.x86.sse2.pause()" if _X86 else "",
}

_KEEP = []  # the engine (and so the machine code) lives as long as the process
poll = park = post = None


def build():
    """Compile the three functions (once; Numba has initialised LLVM's native target)."""
    global poll, park, post
    if poll is not None:
        return
    import llvmlite.binding as llvm

    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    mod = llvm.parse_assembly(_IR)
    mod.verify()
    machine = llvm.Target.from_default_triple().create_target_machine(opt=2)
    engine = llvm.create_mcjit_compiler(mod, machine)
    engine.finalize_object()
    _KEEP.append((engine, mod))
    i64, ptr = ctypes.c_int64, ctypes.c_void_p
    addr = engine.get_function_address
    park = ctypes.CFUNCTYPE(i64, ptr, i64, i64, ptr)(addr("nn_park"))
    post = ctypes.CFUNCTYPE(i64, ptr, i64, ptr, i64)(addr("nn_post"))
    poll = ctypes.CFUNCTYPE(i64, ptr, i64, i64)(addr("nn_poll"))
