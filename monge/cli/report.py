"""A small static HTML report: sections with a text, figures (PNG files beside the page) and metrics."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Section", "write_report", "pyplot", "save_figure"]


def pyplot(extra: str = "demo"):
    """``matplotlib.pyplot`` on the file-only Agg backend, or an ImportError naming the extra that provides it."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(f"figures need matplotlib: pip install 'monge[{extra}]'") from e
    return plt


def save_figure(fig, path, *, dpi: int, tight: bool = True, crop: bool = False) -> None:
    """Write ``fig`` as a PNG at ``path`` and release it: ``tight`` lays it out first, ``crop`` trims the margins."""
    if tight:
        fig.tight_layout()
    fig.savefig(path, dpi=dpi, bbox_inches="tight" if crop else None)
    pyplot().close(fig)


@dataclass
class Section:
    """One report section: a title, a paragraph, PNG file names (relative to the report) and metrics."""

    title: str
    text: str
    images: list[str] = field(default_factory=list)
    metrics: dict[str, str] = field(default_factory=dict)


_STYLE = """body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{font-size:1.2em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
img{max-width:100%;border:1px solid #eee}table{border-collapse:collapse;margin:.5em 0}
td{padding:.15em .8em;border-bottom:1px solid #eee;font-family:monospace}"""


def write_report(sections: list[Section], out_dir: Path, title: str = "monge report") -> Path:
    """Write ``out_dir/index.html`` for the sections (their images must already be in ``out_dir``).

    Example:
        >>> import tempfile, pathlib
        >>> p = write_report([Section("t", "x")], pathlib.Path(tempfile.mkdtemp()))
        >>> p.name
        'index.html'
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    parts = [f"<!doctype html><meta charset=utf-8><title>{html.escape(title)}</title><style>{_STYLE}</style>"]
    parts.append(f"<h1>{html.escape(title)}</h1>")
    for s in sections:
        parts.append(f"<h2>{html.escape(s.title)}</h2><p>{html.escape(s.text)}</p>")
        if s.metrics:
            rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in s.metrics.items())
            parts.append(f"<table>{rows}</table>")
        parts.extend(f'<img src="{html.escape(img)}" alt="{html.escape(s.title)}">' for img in s.images)
    path = out_dir / "index.html"
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
