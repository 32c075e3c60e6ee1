# Sourced by bench/asv_record.sh and bench/asv_backfill.sh (needs $root and $python):
# sets $machine and registers it with asv (~/.asv-machine.json).
#
# One asv machine name per CPU kind: this project's 2-core machine is an Intel Xeon
# in some sessions and an AMD EPYC in others, and their timings are not
# one history. GenuineIntel -> numbanorm-ci-2core (the name of the first kept results),
# AuthenticAMD -> numbanorm-ci-2core-amd, anything else -> numbanorm-ci-2core-<vendor>;
# NUMBANORM_ASV_MACHINE overrides (a GPU machine: numbanorm-h200).
#
# The kept results/<machine>/machine.json is the machine's description: asv graphs split
# by every field of it (os, ram, ...), so a machine already in the repository is
# registered with its kept fields, not with what this session's kernel version or RAM
# reads; a new machine is described from this one.
vendor=$(awk -F': *' '/^vendor_id/{print $2; exit}' /proc/cpuinfo 2>/dev/null || true)
case "$vendor" in
    GenuineIntel) default_machine=numbanorm-ci-2core ;;
    AuthenticAMD) default_machine=numbanorm-ci-2core-amd ;;
    *) default_machine=numbanorm-ci-2core-$(echo "${vendor:-unknown}" | tr 'A-Z' 'a-z') ;;
esac
machine=${NUMBANORM_ASV_MACHINE:-$default_machine}
kept="$root/asv_benchmarks/results/$machine/machine.json"
git -C "$root" ls-files --error-unmatch "$kept" >/dev/null 2>&1 || kept=
# asv's own `asv machine --yes` stores only the fields that differ from what it detects, so
# the entry is written whole with asv's MachineCollection
"$python" - "$machine" "$kept" <<'PY'
import json, os, platform, sys
from asv.machine import MachineCollection
name, kept = sys.argv[1], sys.argv[2]
if kept:
    with open(kept, encoding="utf-8") as f:
        info = {k: v for k, v in json.load(f).items() if k != "version"}
else:
    cpu = "unknown"
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    info = {"arch": platform.machine(), "cpu": cpu, "num_cpu": str(os.cpu_count()),
            "os": f"{platform.system()} {platform.release()}",
            "ram": str(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))}
MachineCollection.save(name, {**info, "machine": name})
PY
