"""One report, two renderings: the same headings, paragraphs, tables, lists and plots become Markdown (for
the repository and terminals) and a self-contained HTML page (real tables, sortable by clicking a header,
status cells coloured, plots embedded).

    doc = Document("Export report: efficientnet_lite0")
    doc.paragraph("Checkpoint ...")
    doc.table(["artifact", "status"], [["`x.onnx`", "pass"]], status_column="status")
    doc.image("roc.png", "ROC of every artifact")
    write_text(out / "report.md", doc.markdown()); write_text(out / "report.html", doc.html(images={...}))
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from typing import Any

STATUS_CLASSES = {"pass": "ok", "reference": "ref", "fail": "bad", "not-run": "warn", "unsupported": "muted"}

_STYLE = """
body{font-family:system-ui,-apple-system,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:13px}th,td{border:1px solid #ddd;padding:4px 8px;text-align:left}
th{background:#f3f3f3;cursor:pointer;user-select:none;position:sticky;top:0}th:hover{background:#e6e6e6}
td.num{text-align:right;font-variant-numeric:tabular-nums}tr:nth-child(even) td{background:#fafafa}
td.ok{background:#d8f3dc!important}td.bad{background:#ffd6d6!important}td.warn{background:#fff3c4!important}
td.ref{background:#e7ecff!important}td.muted{color:#888}img{max-width:100%;border:1px solid #eee;margin:.5em 0}
code{background:#f3f3f3;padding:0 3px;border-radius:3px}.note{color:#555;font-size:13px}
"""
_SORT = """
document.querySelectorAll('th').forEach(th=>th.addEventListener('click',()=>{
 const table=th.closest('table'),body=table.tBodies[0],i=[...th.parentNode.children].indexOf(th);
 const up=th.dataset.dir!=='up';th.dataset.dir=up?'up':'down';
 const key=r=>{const t=r.children[i].innerText.trim(),n=parseFloat(t.replace(/[^0-9eE+.-]/g,''));
  return /^[-+]?[0-9.]/.test(t)&&!isNaN(n)?n:t.toLowerCase()};
 [...body.rows].sort((a,b)=>{const x=key(a),y=key(b);return (x>y?1:x<y?-1:0)*(up?1:-1)})
  .forEach(r=>body.appendChild(r))}));
"""


@dataclass
class Document:
    """A report as a list of blocks; see the module docstring."""

    title: str
    blocks: list[tuple[str, Any]] = field(default_factory=list)

    def heading(self, text: str) -> Document:
        self.blocks.append(("h2", text))
        return self

    def paragraph(self, text: str) -> Document:
        self.blocks.append(("p", text))
        return self

    def bullets(self, items: list[str]) -> Document:
        if items:
            self.blocks.append(("ul", items))
        return self

    def table(self, headers: list[str], rows: list[list[Any]], status_column: str | None = None) -> Document:
        """Cells are rendered with str(); a cell of `status_column` is coloured by its first word."""
        self.blocks.append(
            ("table", (headers, [[("-" if c is None else str(c)) for c in r] for r in rows], status_column))
        )
        return self

    def image(self, name: str, alt: str) -> Document:
        self.blocks.append(("img", (name, alt)))
        return self

    def markdown(self) -> str:
        lines = [f"# {self.title}", ""]
        for kind, value in self.blocks:
            if kind == "h2":
                lines += [f"## {value}", ""]
            elif kind == "p":
                lines += [value, ""]
            elif kind == "ul":
                lines += [f"- {item}" for item in value] + [""]
            elif kind == "table":
                headers, rows, _ = value
                lines.append("| " + " | ".join(headers) + " |")
                lines.append("|" + "---|" * len(headers))
                lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
                lines.append("")
            elif kind == "img":
                lines += [f"![{value[1]}]({value[0]})", ""]
        return "\n".join(lines)

    def html(self, images: dict[str, bytes] | None = None) -> str:
        """A self-contained page; plots named in `images` are embedded, others are linked by file name."""
        parts = [f"<h1>{_inline(self.title)}</h1>"]
        for kind, value in self.blocks:
            if kind == "h2":
                parts.append(f"<h2>{_inline(value)}</h2>")
            elif kind == "p":
                parts.append(f"<p>{_inline(value)}</p>")
            elif kind == "ul":
                parts.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in value) + "</ul>")
            elif kind == "table":
                parts.append(_html_table(*value))
            elif kind == "img":
                name, alt = value
                data = (images or {}).get(name)
                src = f"data:image/png;base64,{base64.b64encode(data).decode()}" if data else html.escape(name)
                parts.append(
                    f'<figure><img alt="{html.escape(alt)}" src="{src}"><figcaption class="note">'
                    f"{html.escape(alt)}</figcaption></figure>"
                )
        return (
            f"<!doctype html><html><head><meta charset='utf-8'><meta name='viewport' content='width=device-width'>"
            f"<title>{html.escape(self.title)}</title><style>{_STYLE}</style></head><body>{''.join(parts)}"
            f"<p class='note'>Click a column header to sort.</p><script>{_SORT}</script></body></html>"
        )


def _inline(text: str) -> str:
    """Markdown's inline `code` and **bold** as HTML, everything else escaped."""
    out = html.escape(text)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", out)


def _html_table(headers: list[str], rows: list[list[str]], status_column: str | None) -> str:
    status = headers.index(status_column) if status_column in headers else -1
    head = "".join(f"<th>{_inline(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            classes = []
            if i == status:
                classes.append(STATUS_CLASSES.get(cell.split(":")[0].split()[0] if cell.strip() else "", ""))
            if re.fullmatch(r"[-+]?[0-9.]+(e[-+]?[0-9]+)?( \[.*\])?", cell):
                classes.append("num")
            attr = f' class="{" ".join(c for c in classes if c)}"' if any(classes) else ""
            cells.append(f"<td{attr}>{_inline(cell)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
