"""The human-readable API reference (GET /v1/docs): simple HTML rendered here from the OpenAPI document, offline
(no script, stylesheet or font from a CDN)."""

import html
import json
from typing import Any

_STYLE = ("body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}"
          "code,pre{font:13px ui-monospace,monospace;background:#f4f4f4}pre{padding:.6rem;overflow:auto}"
          "h2{border-top:1px solid #ddd;padding-top:1rem}.m{font-weight:bold;margin-right:.5rem}"
          "table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:.2rem .5rem;text-align:left;vertical-align:top}")


def _e(value: Any) -> str:
    return html.escape(str(value))


def render(doc: dict[str, Any]) -> str:
    """The reference page of `doc` (an OpenAPI 3.1 document)."""
    info = doc.get("info", {})
    out = [f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{_e(info.get('title'))} API reference</title>",
           f"<style>{_STYLE}</style></head><body><h1>{_e(info.get('title'))} {_e(info.get('version'))}</h1>",
           f"<p>{_e(info.get('description', ''))}</p><p>The machine-readable document: <a href=openapi.json>openapi.json</a>.</p>",
           "<ul>"]
    ops = [(path, method, op) for path, item in doc.get("paths", {}).items() for method, op in item.items()]
    out += [f"<li><a href=#{_e(op['operationId'])}><span class=m>{_e(m.upper())}</span>{_e(p)}</a> {_e(op.get('summary', ''))}</li>"
            for p, m, op in ops]
    out.append("</ul>")
    for path, method, op in ops:
        out.append(f"<h2 id={_e(op['operationId'])}><span class=m>{_e(method.upper())}</span><code>{_e(path)}</code></h2>")
        out.append(f"<p><b>{_e(op.get('summary', ''))}</b> ({_e(op['operationId'])}). {_e(op.get('description', ''))}</p>")
        params = op.get("parameters", [])
        if params:
            out.append("<table><tr><th>parameter</th><th>in</th><th>required</th><th>description</th></tr>")
            out += [f"<tr><td><code>{_e(p['name'])}</code></td><td>{_e(p['in'])}</td><td>{'yes' if p.get('required') else 'no'}</td>"
                    f"<td>{_e(p.get('description', ''))}</td></tr>" for p in params]
            out.append("</table>")
        body = op.get("requestBody", {}).get("content", {}).get("application/json", {})
        if body:
            out.append(f"<p>Body: <code>{_e(body.get('schema', {}).get('$ref', 'object').rsplit('/', 1)[-1])}</code></p>")
            if "example" in body:
                out.append(f"<pre>{_e(json.dumps(body['example'], indent=2, ensure_ascii=False))}</pre>")
        out.append("<table><tr><th>status</th><th>answer</th></tr>")
        for status, resp in op.get("responses", {}).items():
            schema = resp.get("content", {}).get("application/json", {}).get("schema", {})
            out.append(f"<tr><td>{_e(status)}</td><td>{_e(resp.get('description', ''))} "
                       f"<code>{_e(schema.get('$ref', '').rsplit('/', 1)[-1])}</code></td></tr>")
        out.append("</table>")
    out.append("</body></html>")
    return "".join(out)
