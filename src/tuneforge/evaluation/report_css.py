"""The A/B report's stylesheet, inlined into report.html (and the retrieval report)."""

CSS = """
:root { --fg:#111827; --muted:#6b7280; --line:#e5e7eb; --bg:#f9fafb; --good:#15803d; --bad:#b91c1c;
        --goodbg:#dcfce7; --badbg:#fee2e2; --accent:#2563eb; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--fg);
       font:15px/1.5 -apple-system, "Segoe UI", Roboto, "Noto Sans", "DejaVu Sans", sans-serif; }
main { max-width:1180px; margin:0 auto; padding:28px 32px 48px; }
h1 { font-size:26px; margin:0 0 4px; }
h2 { font-size:18px; margin:32px 0 12px; padding-bottom:6px; border-bottom:1px solid var(--line); }
.meta { color:var(--muted); font-size:13px; margin:0; }
.meta code { background:#eef2ff; padding:1px 5px; border-radius:4px; font-size:12px; }
.verdict { margin:18px 0 0; padding:14px 18px; border-radius:10px; font-size:17px; font-weight:600;
           background:var(--goodbg); color:#14532d; border:1px solid #bbf7d0; }
.verdict.mixed { background:#fef9c3; color:#713f12; border-color:#fde68a; }
.verdict.worse { background:var(--badbg); color:#7f1d1d; border-color:#fecaca; }
.cards { display:grid; grid-template-columns:repeat(auto-fit, minmax(170px, 1fr)); gap:12px;
         margin-top:18px; }
.card { background:#fff; border:1px solid var(--line); border-radius:10px; padding:12px 14px; }
.card .label { color:var(--muted); font-size:12px; text-transform:uppercase; letter-spacing:.04em; }
.card .value { font-size:24px; font-weight:650; margin-top:2px; }
.card .base { color:var(--muted); font-size:12px; }
.card .delta { font-size:13px; }
table.metrics { width:100%; border-collapse:collapse; background:#fff; border:1px solid var(--line);
                border-radius:10px; overflow:hidden; }
table.metrics th, table.metrics td { padding:9px 14px; border-bottom:1px solid var(--line);
                                      text-align:right; }
table.metrics th { background:#f3f4f6; font-size:13px; color:#374151; }
table.metrics th:first-child, table.metrics td:first-child { text-align:left; }
table.metrics tr:last-child td { border-bottom:none; }
td.num { font-variant-numeric: tabular-nums; }
.delta { font-weight:600; white-space:nowrap; font-variant-numeric: tabular-nums; }
.better { color:var(--good); } .worse { color:var(--bad); } .same, .info { color:var(--muted); }
.pill { display:inline-block; font-size:11px; font-weight:600; padding:1px 7px; border-radius:999px;
        margin-left:6px; vertical-align:1px; }
.pill.better { background:var(--goodbg); } .pill.worse { background:var(--badbg); }
.note { color:var(--muted); font-size:12.5px; margin:8px 2px 0; }
figure { margin:0; background:#fff; border:1px solid var(--line); border-radius:10px; padding:10px; }
figure img { width:100%; height:auto; display:block; }
.sample { background:#fff; border:1px solid var(--line); border-radius:10px; margin:0 0 14px;
          overflow:hidden; }
.sample .prompt { padding:10px 14px; background:#f3f4f6; border-bottom:1px solid var(--line);
                  font-weight:600; }
.sample .prompt .n { color:var(--muted); font-weight:500; margin-right:6px; }
.sample .system { display:block; color:var(--muted); font-weight:400; font-size:12px; margin-top:2px; }
.answers { display:grid; grid-template-columns:repeat(3, minmax(0, 1fr)); }
.answer { padding:10px 14px; border-right:1px solid var(--line); min-width:0; }
.answer:last-child { border-right:none; }
.answer h3 { margin:0 0 4px; font-size:11.5px; text-transform:uppercase; letter-spacing:.05em;
             color:var(--muted); }
.answer.tuned h3 { color:var(--accent); }
.answer p { margin:0; white-space:pre-wrap; overflow-wrap:anywhere; font-size:14px; }
.answer p.empty { color:var(--muted); font-style:italic; }
footer { color:var(--muted); font-size:12px; margin-top:36px; }
@media (max-width: 760px) { .answers { grid-template-columns:1fr; } .answer { border-right:none;
  border-bottom:1px solid var(--line); } main { padding:18px; } }
"""
