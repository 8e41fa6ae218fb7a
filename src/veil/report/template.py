"""The page template (Jinja2, autoescaped), kept in a Python module so it ships with the package without
package-data configuration. Every value from the run's JSON passes through autoescaping; the only
unescaped content is the base64 PNG data URIs the report itself produced.

Long lines are HTML table rows, clearer unbroken.
"""
# ruff: noqa: E501

PAGE = r"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Veil report: {{ run_name }}</title>
<style>
 body { font-family: -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; margin: 24px auto; max-width: 1180px;
        color: #1b1b1b; line-height: 1.4; padding: 0 16px; }
 h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { font-size: 1.25em; margin-top: 1.8em; border-bottom: 1px solid #ddd; }
 .sub { color: #555; margin-top: 0; }
 table { border-collapse: collapse; margin: 0.6em 0 1.2em; font-size: 0.92em; }
 caption { caption-side: top; text-align: left; font-weight: 600; padding-bottom: 4px; }
 th, td { border: 1px solid #d0d0d0; padding: 4px 8px; vertical-align: top; }
 th { background: #f3f3f3; text-align: left; }
 td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
 td.na { color: #999; text-align: center; }
 td.variant { min-width: 16em; }
 #provenance table { min-width: 34em; }
 .banner { background: #fff3cd; border: 1px solid #e0c36a; padding: 8px 12px; margin: 10px 0; }
 .missing { background: #f6f6f6; border-left: 4px solid #b0b0b0; padding: 6px 12px; }
 .headline { background: #eef5ff; border-left: 4px solid #1f77b4; padding: 8px 12px; }
 figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
 figcaption { font-size: 0.9em; color: #444; max-width: 1000px; }
 pre { background: #f7f7f7; padding: 8px; overflow-x: auto; font-size: 0.85em; }
 code { font-size: 0.92em; } details { margin: 0.4em 0; }
</style>
</head>
<body>
<h1>Veil report — <code>{{ run_name }}</code></h1>
<p class="sub">Generated {{ generated }} by <code>{{ command }}</code>. Every rate is top-1 identification with its n
(probes) and a 95% interval (Wilson for rates, bootstrap over identities for the ratio); chance = 1 / gallery persons.</p>
{% if synthetic %}<div class="banner" id="synthetic-banner"><b>SYNTHETIC data</b>: the run's files say its data are
synthetic; no figure here describes real faces.</div>{% endif %}

{% if headline %}<div class="headline" id="headline">{{ headline }}</div>{% endif %}

{% if missing %}
<section id="missing">
<h2>Not in this run</h2>
<div class="missing"><ul>{% for m in missing %}<li>missing: {{ m }}</li>{% endfor %}</ul></div>
</section>
{% endif %}

<section id="utility">
<h2>Utility</h2>
{% if utility %}
<table id="utility-table">
<caption>Owner's utility: top-1 identification of unseen persons (results.json)</caption>
<tr><th>method</th><th>top-1</th><th>95% CI</th><th>hits / n</th><th>gallery</th><th>chance</th></tr>
{% for name, r in utility %}
<tr><td>{{ name }}</td><td class="num">{{ r.rate|pct }}</td><td class="num">{{ r|ci }}</td>
<td class="num">{{ r|hn }}</td><td class="num">{{ r.gallery if r.gallery is not none else "—" }}</td>
<td class="num">{{ r.chance|pct }}</td></tr>
{% endfor %}
{% if ratio %}
<tr id="ratio-row"><td>XNN / Vanilla+PE</td><td class="num">{{ ratio.ratio|pct1 }}</td><td class="num">{{ ratio.ci }}</td>
<td colspan="3">ratio of hits on the same probes; {{ ratio.how }}</td></tr>
{% endif %}
</table>
{% else %}<p class="missing">No utility recorded (results.json missing or without 'utility').</p>{% endif %}
{% if key_binding %}
<table id="key-binding-table">
<caption>Key binding: XNN's RecNet with gallery / probes under different keys</caption>
<tr><th>setting</th><th>top-1</th><th>95% CI</th><th>hits / n</th><th>chance</th></tr>
{% for name, r in key_binding %}
<tr><td>{{ name }}</td><td class="num">{{ r.rate|pct }}</td><td class="num">{{ r|ci }}</td><td class="num">{{ r|hn }}</td>
<td class="num">{{ r.chance|pct }}</td></tr>
{% endfor %}
</table>
{% endif %}
</section>

{% if table2 is not none %}
<section id="table2-section">
<h2>Table 2 — utility and identity leakage per method</h2>
<table id="table2">
<caption>Table 2 (table2.json): utility, and leakage with each auxiliary group (the paper's ASR), per method</caption>
<tr><th rowspan="2">method</th><th colspan="3">utility</th>
{% for g in table2_aux %}<th colspan="3">leakage, {{ g }}</th>{% endfor %}<th rowspan="2">chance</th></tr>
<tr><th>top-1</th><th>95% CI</th><th>hits / n</th>{% for g in table2_aux %}<th>top-1</th><th>95% CI</th><th>hits / n</th>{% endfor %}</tr>
{% for row in table2 %}
<tr><td>{{ row.method }}</td>{{ rate_cells(row.utility) }}
{% for g in table2_aux %}{{ rate_cells(row.leakage.get(g)) }}{% endfor %}<td class="num">{{ row.chance|pct }}</td></tr>
{% endfor %}
</table>
</section>
{% endif %}

{% if ablations is not none %}
<section id="table5-section">
<h2>Table 5 — ablations</h2>
<table id="table5">
<caption>Table 5 (table2.json): which XNN module matters for utility</caption>
<tr><th>variant</th><th>pre-trained ExtNet</th><th>ObfNet</th><th>frozen RecNet</th><th>top-1</th><th>95% CI</th><th>hits / n</th></tr>
{% for a in ablations %}
<tr><td>{{ a.name }}</td><td>{{ a.pretrained_extnet|tick }}</td><td>{{ a.obfnet|tick }}</td><td>{{ a.frozen_recnet|tick }}</td>
{{ rate_cells(a.utility) }}</tr>
{% endfor %}
</table>
</section>
{% endif %}

<section id="attacks-section">
<h2>Attacks</h2>
{% if attacks %}
<table id="attacks-table">
<caption>Every attack result (attacks/*.json): leakage on the owner's test probes, beside chance and utility</caption>
<tr><th>method</th><th>attack</th><th>variant</th><th>leakage</th><th>95% CI</th><th>hits / n</th><th>chance</th>
<th>utility (same probes)</th><th>time</th></tr>
{% for a in attacks %}
<tr><td>{{ a.method }}</td><td>{{ a.attack }}</td><td class="variant">{{ a.variant or "—" }}</td><td class="num">{{ a.leakage.rate|pct }}</td>
<td class="num">{{ a.leakage|ci }}</td><td class="num">{{ a.leakage|hn }}</td><td class="num">{{ a.chance|pct }}</td>
<td class="num">{% if a.utility %}{{ a.utility.rate|pct }} {{ a.utility|ci }}{% else %}—{% endif %}</td>
<td class="num" title="{{ a.source }}">{{ a.seconds|secs }}</td></tr>
{% endfor %}
</table>
{% else %}<p class="missing">No attack results (attacks/*.json).</p>{% endif %}
{% if tradeoff %}
<figure id="tradeoff-figure"><img id="tradeoff-plot" alt="utility vs leakage" src="{{ tradeoff }}">
<figcaption>Each point: a method's utility (x) and an adversary's top-1 on the same probes (y), both with 95% CIs.
Below the dotted diagonal the adversary does worse than the owner; the dashed line is chance.
{% if table2 %}Filled markers: Table 2; hollow: attacks/*.json.{% endif %}</figcaption></figure>
{% endif %}
</section>

{% if curves %}
<section id="known-plaintext-section">
<h2>Attacks over k leaked pairs</h2>
{% if kp_plot %}<figure id="kp-figure"><img id="kp-plot" alt="known-plaintext leakage over k" src="{{ kp_plot }}">
<figcaption>Left: leakage with k leaked (clean, obfuscated) training pairs, 95% CI bands, beside the owner's utility
and chance. Right: how much of the key (permutation P, matrix M) the pairs reveal, scored by the owner-side harness.
</figcaption></figure>{% endif %}
{% for c in curves %}
<table class="kp-table" id="kp-table-{{ loop.index }}">
<caption>{{ c.title }}, {{ c.method }}, identifier {{ c.identifier }} ({{ c.source }})</caption>
<tr><th>k</th><th>leakage</th><th>95% CI</th><th>hits / n</th><th>chance</th><th>P recovered</th><th>‖M̂ − M‖ / ‖M‖</th></tr>
{% for p in c.points %}
<tr><td class="num">{{ p.k }}</td><td class="num">{{ p.leakage.rate|pct }}</td><td class="num">{{ p.leakage|ci }}</td>
<td class="num">{{ p.leakage|hn }}</td><td class="num">{{ p.leakage.chance|pct }}</td>
<td class="num">{{ p.permutation_accuracy|pct0 if p.k > 0 else "—" }}</td>
<td class="num">{{ p.matrix_rel_error|sig if p.k > 0 else "—" }}</td></tr>
{% endfor %}
</table>
{% endfor %}
</section>
{% endif %}

{% if xnnd_plot %}
<section id="xnnd-curve-section">
<h2>XNN-d privacy-utility curve</h2>
<figure id="xnnd-figure"><img id="xnnd-curve-plot" alt="XNN-d utility vs strongest-attack ASR" src="{{ xnnd_plot }}">
<figcaption>One point per (noise bound eps, adversary strength) setting: the server RecNet's utility against the
strongest of the black-box, transfer, expectation and known-plaintext attacks; the baseline (no noise), the paper's
points and the targets (ASR at most half the baseline's, utility at least 90% of it) marked.
Verdict: {{ xnnd_verdict }}</figcaption></figure>
</section>
{% endif %}

<section id="tsne-section">
<h2>Clean vs obfuscated features (t-SNE, cf. the paper's Figure 6)</h2>
{% if tsne %}
<figure id="tsne-figure"><img id="tsne-plot" alt="t-SNE of clean and obfuscated features" src="{{ tsne.image }}">
<figcaption>{{ tsne.persons }} persons of the owner's training set (those with the most rows, at most {{ tsne_cap }} rows
each, mirror copies included; {{ tsne.points }} points per panel), tokens mean-pooled, t-SNE perplexity
{{ "%.1f"|format(tsne.perplexity) }}, seed {{ seed }}; {{ "%.1f"|format(tsne.seconds) }} s.
{% if tsne.aligned %}The same rows in both panels (the stores hold the same images in the same order).
{% if tsne.distance_correlation is not none %}Correlation of pairwise distances, clean vs obfuscated:
<b id="tsne-corr">{{ "%.4f"|format(tsne.distance_correlation) }}</b>{% if tsne.distance_correlation > 0.999 %} — the
obfuscation kept the geometry of pooled features (an orthogonal M preserves distances and pooling ignores P); both panels start
t-SNE from the same seeded layout, so the differences left come from float16 rounding amplified by t-SNE's non-convex optimisation, not from the
obfuscation{% endif %}.{% endif %}
{% else %}The stores are not row-aligned, so each panel is coloured by its own labels; colours are not comparable.{% endif %}
</figcaption></figure>
{% else %}<p class="missing">{{ tsne_note }}</p>{% endif %}
</section>

<section id="provenance">
<h2>Provenance</h2>
<table id="provenance-table">
<caption>How this run was made</caption>
{% for k, v in provenance %}<tr><th>{{ k }}</th><td>{{ v }}</td></tr>{% endfor %}
</table>
{% if environment %}
<table id="environment-table"><caption>Environment (results.json)</caption>
{% for k, v in environment %}<tr><th>{{ k }}</th><td>{{ v }}</td></tr>{% endfor %}</table>
{% endif %}
{% if timings %}
<table id="timings-table"><caption>Wall times of the pipeline steps (results.json)</caption>
{% for k, v in timings %}<tr><th>{{ k }}</th><td class="num">{{ v|secs }}</td></tr>{% endfor %}</table>
{% endif %}
{% if attack_meta %}
<table id="attack-provenance-table"><caption>Attack runs</caption>
<tr><th>file</th><th>attack</th><th>method</th><th>seed</th><th>time</th><th>command</th></tr>
{% for m in attack_meta %}<tr><td><code>{{ m.file }}</code></td><td>{{ m.attack }}</td><td>{{ m.method }}</td>
<td class="num">{{ m.seed if m.seed is not none else "—" }}</td><td class="num">{{ m.seconds|secs }}</td>
<td>{% if m.command %}<code>{{ m.command }}</code>{% else %}not recorded{% endif %}</td></tr>{% endfor %}
</table>
{% endif %}
{% if table2_meta %}
<table id="table2-provenance-table"><caption>table2.json</caption>
{% for k, v in table2_meta %}<tr><th>{{ k }}</th><td>{{ v }}</td></tr>{% endfor %}</table>
{% endif %}
{% for title, text in dumps %}<details><summary>{{ title }}</summary><pre>{{ text }}</pre></details>{% endfor %}
<table id="sources-table"><caption>Files read (store shards are checked against their manifest's SHA-256; owner.key is
never opened; fields naming a key are left out)</caption>
<tr><th>file</th><th>bytes</th><th>SHA-256</th></tr>
{% for s in sources %}<tr><td><code>{{ s.path }}</code></td><td class="num">{{ s.bytes }}</td><td><code>{{ s.sha256[:16] }}…</code></td></tr>{% endfor %}
</table>
</section>
</body>
</html>
"""

RATE_CELLS = r"""{% macro rate_cells(r) -%}
{% if r %}<td class="num">{{ r.rate|pct }}</td><td class="num">{{ r|ci }}</td><td class="num">{{ r|hn }}</td>
{%- else %}<td class="na" colspan="3">missing</td>{% endif %}
{%- endmacro %}"""
