"""The README's quick start runs as written."""

import pathlib
import re


def test_quick_start_runs():
    text = (pathlib.Path(__file__).parents[1] / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, "the README has no python block"
    for code in blocks:
        exec(compile(code, "README.md", "exec"), {})
