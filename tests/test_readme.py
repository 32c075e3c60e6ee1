"""The README stays true: its NumPy example runs, its commands are what CI runs."""
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_numpy_examples_run():
    blocks = re.findall(r"```python\n(.*?)```", README, flags=re.S)
    runnable = [b for b in blocks if "cupy" not in b]
    assert runnable
    for code in runnable:
        exec(compile(code, "README.md", "exec"), {})


def test_set_up_commands_are_marked_for_ci():
    for marker in ("main-command", "test-command"):
        block = re.search(rf"<!-- {marker} -->\n```\n(.+?)\n```\n<!-- /{marker} -->", README, flags=re.S)
        assert block, marker
    assert "test-command" in (ROOT / ".ci" / "run").read_text()


def test_relative_links_point_into_the_repository():
    """The README's links to repository files (e.g. the API reference) resolve."""
    links = [t for t in re.findall(r"\]\(([^)\s]+)\)", README) if "://" not in t and not t.startswith("#")]
    assert "docs/api.md" in links
    missing = [t for t in links if not (ROOT / t.split("#")[0]).exists()]
    assert not missing
    assert "shared/API.md" not in README
