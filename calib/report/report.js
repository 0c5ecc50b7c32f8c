// report.js: draws report.html's plots from the JSON that calib/run_report.cpp embeds in
// <script id="dsv4-data">: { runs: [ { label, manifest, starts, ends, eval } ] }, where manifest is
// the run's calib_manifest.json, starts/ends its progress.jsonl run_start/run_end events and eval
// the `dsv4-calib eval --json` result (or null). Several runs compare side by side: overlaid where
// a plot has one axis for all (errors, memory), one panel per run where it does not (stacked times,
// methods, the heat map). Chart.js (third_party/chart.js) draws the charts; the heat map is a
// canvas drawn here. When done, #status says how many plots were drawn (data-plots) or the error
// (data-error): the headless-browser test (tests/e2e/report_browser.sh) reads it.
(function () {
  'use strict';
  const status = document.getElementById('status');
  const errors = [];
  window.addEventListener('error', function (e) { errors.push(String(e.message)); });
  const data = JSON.parse(document.getElementById('dsv4-data').textContent);
  const runs = data.runs;
  const colors = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b', '#e377c2', '#17becf'];
  const phaseColors = {decode: '#8c564b', forward: '#1f77b4', reduce: '#17becf', solve: '#d62728', share: '#9467bd',
                       wait: '#7f7f7f', write: '#bcbd22'};
  const methodColors = {gptq: '#1f77b4', rtn: '#ff7f0e', fp8_reencode: '#2ca02c', mxfp4_to_int4: '#9467bd'};
  let plots = 0;
  Chart.defaults.animation = false;
  Chart.defaults.font.size = 11;

  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function layersOf(run) { return run.manifest.layers || []; }
  function segmentNames(run) { return layersOf(run).map(function (l) { return l.segment; }); }
  // A panel (title + canvas) appended to the section's grid; returns the canvas.
  // Chart.js sizes a responsive chart to its parent: the canvas sits alone in a box of fixed height.
  function panel(sectionId, title, height) {
    const box = el('div', {class: 'panel'});
    box.appendChild(el('h3', {}, title));
    const area = el('div', {style: 'position: relative; height: ' + (height || 260) + 'px'});
    const c = el('canvas');
    area.appendChild(c);
    box.appendChild(area);
    document.getElementById(sectionId).appendChild(box);
    return c;
  }
  function chart(canvas, config) {
    config.options = Object.assign({responsive: true, maintainAspectRatio: false}, config.options || {});
    new Chart(canvas.getContext('2d'), config);
    plots++;
  }
  function num(v) { return typeof v === 'number' ? Number(v.toPrecision(4)).toString() : '-'; }
  function gb(bytes) { return bytes === undefined || bytes === null ? null : bytes / 1e9; }

  // 1. Time per layer by phase, stacked (one panel per run).
  const phases = ['decode', 'forward', 'reduce', 'solve', 'share', 'wait', 'write'];
  runs.forEach(function (run) {
    const layers = layersOf(run);
    chart(panel('times', run.label), {
      type: 'bar',
      data: {labels: segmentNames(run), datasets: phases.map(function (p) {
        return {label: p, backgroundColor: phaseColors[p], data: layers.map(function (l) { return l.seconds[p]; })};
      })},
      options: {scales: {x: {stacked: true}, y: {stacked: true, title: {display: true, text: 'seconds'}}}}
    });
  });

  // 2. GPTQ vs RTN error per layer, every run overlaid (log scale).
  const errDatasets = [];
  runs.forEach(function (run, i) {
    const layers = layersOf(run);
    const pick = function (k) { return layers.map(function (l) { return l[k] === undefined ? null : l[k]; }); };
    errDatasets.push({label: run.label + ' GPTQ', data: pick('mean_rel_error'), borderColor: colors[i % 8],
                      backgroundColor: colors[i % 8], spanGaps: true});
    errDatasets.push({label: run.label + ' RTN', data: pick('mean_rtn_rel_error'), borderColor: colors[i % 8],
                      backgroundColor: colors[i % 8], borderDash: [6, 4], spanGaps: true});
  });
  chart(panel('errors', 'mean H-weighted relative error per layer (solid GPTQ, dashed RTN)', 300), {
    type: 'line', data: {labels: segmentNames(runs[0]), datasets: errDatasets},
    options: {scales: {y: {type: 'logarithmic', title: {display: true, text: 'tr(ΔHΔᵀ)/tr(WHWᵀ)'}}}}
  });

  // 3. The error's distribution over modules: one point per GPTQ module, GPTQ error over RTN's.
  const scatter = runs.map(function (run, i) {
    const pts = [];
    layersOf(run).forEach(function (l, li) {
      (l.modules || []).forEach(function (m, mi) {
        if (m.rel_error > 0 && m.rtn_rel_error > 0) {
          pts.push({x: li + 0.7 * ((mi % 17) / 17 - 0.35), y: m.rel_error / m.rtn_rel_error, module: m.module});
        }
      });
    });
    return {label: run.label, data: pts, backgroundColor: colors[i % 8] + '99', pointRadius: 2};
  });
  chart(panel('errors', 'per module: GPTQ error / RTN error (below 1: GPTQ better), by layer', 300), {
    type: 'scatter', data: {datasets: scatter},
    options: {scales: {x: {ticks: {stepSize: 1, callback: function (v) { return segmentNames(runs[0])[v] || ''; }}},
                       y: {type: 'logarithmic', title: {display: true, text: 'GPTQ / RTN'}}},
              plugins: {tooltip: {callbacks: {label: function (c) {
                return c.raw.module + ': ' + c.raw.y.toPrecision(3);
              }}}}}
  });

  // 4. Tokens per expert, layer x expert (a canvas per run): dead experts black, hot ones yellow.
  runs.forEach(function (run) {
    const rows = layersOf(run).filter(function (l) { return l.expert_tokens && l.expert_tokens.length; });
    const box = el('div', {class: 'panel'});
    box.appendChild(el('h3', {}, run.label + ': routed tokens per expert (rows: layers; black: 0 tokens)'));
    if (!rows.length) { box.appendChild(el('p', {}, 'no routed layers')); document.getElementById('experts').appendChild(box); return; }
    const experts = rows[0].expert_tokens.length;
    const cell = Math.max(2, Math.min(24, Math.floor(900 / experts)));
    const rowH = Math.max(6, Math.min(24, Math.floor(400 / rows.length)));
    // At least wide enough for the caption under the cells.
    const c = el('canvas', {width: String(Math.max(480, 90 + experts * cell)), height: String(rows.length * rowH + 20)});
    box.appendChild(c);
    const ctx = c.getContext('2d');
    let max = 1;
    rows.forEach(function (l) { l.expert_tokens.forEach(function (n) { if (n > max) max = n; }); });
    let dead = 0;
    rows.forEach(function (l, r) {
      ctx.fillStyle = '#333';
      ctx.fillText(l.segment, 2, r * rowH + rowH * 0.8);
      l.expert_tokens.forEach(function (n, e) {
        if (n === 0) dead++;
        // log scale, viridis-like ramp from dark blue to yellow
        const t = n === 0 ? -1 : Math.log1p(n) / Math.log1p(max);
        ctx.fillStyle = t < 0 ? '#000' : 'hsl(' + (240 - 180 * t) + ',80%,' + (25 + 40 * t) + '%)';
        ctx.fillRect(90 + e * cell, r * rowH, cell - (cell > 3 ? 1 : 0), rowH - 1);
      });
    });
    ctx.fillStyle = '#333';
    ctx.fillText('expert 0 .. ' + (experts - 1) + '; max ' + max + ' tokens; ' + dead + ' dead (layer, expert) cells',
                 90, rows.length * rowH + 14);
    document.getElementById('experts').appendChild(box);
    plots++;
  });

  // 5. Methods and fallbacks per layer (one panel per run).
  runs.forEach(function (run) {
    const layers = layersOf(run);
    const methods = [];
    layers.forEach(function (l) { for (const k in l.methods) if (methods.indexOf(k) < 0) methods.push(k); });
    const ds = methods.map(function (k) {
      return {label: k, backgroundColor: methodColors[k] || '#999', stack: 'm',
              data: layers.map(function (l) { return l.methods[k] || 0; })};
    });
    ds.push({label: 'fallbacks', backgroundColor: '#000', stack: 'f', data: layers.map(function (l) { return l.fallbacks; })});
    chart(panel('methods', run.label), {
      type: 'bar', data: {labels: segmentNames(run), datasets: ds},
      options: {scales: {x: {stacked: true}, y: {stacked: true, title: {display: true, text: 'modules'}}}}
    });
  });

  // 6. Memory per rank (GB), every run side by side.
  const memKeys = [['host RSS peak', function (r) { return gb(r.host_rss_peak_bytes); }],
                   ['Hessians in pass A', function (r) { return gb(r.hessian_bytes_partial_peak); }],
                   ['Hessians owned', function (r) { return gb(r.hessian_bytes_owned_peak); }],
                   ['GPU arena high water', function (r) { return r.gpu ? gb(r.gpu.arena_high_water_bytes) : null; }]];
  let maxRanks = 0;
  runs.forEach(function (run) { maxRanks = Math.max(maxRanks, (run.manifest.ranks || []).length); });
  const memDs = [];
  runs.forEach(function (run, i) {
    memKeys.forEach(function (mk, k) {
      const vals = (run.manifest.ranks || []).map(mk[1]);
      if (vals.every(function (v) { return v === null; })) return;
      memDs.push({label: (runs.length > 1 ? run.label + ' ' : '') + mk[0], data: vals,
                  backgroundColor: colors[(i * 4 + k) % 8]});
    });
  });
  chart(panel('memory', 'peak memory per rank (GB)', 240), {
    type: 'bar',
    data: {labels: Array.from({length: maxRanks}, function (_, r) { return 'rank ' + r; }), datasets: memDs},
    options: {scales: {y: {title: {display: true, text: 'GB'}}}}
  });

  // 7. The run's facts, a column per run.
  function fact(run) {
    const m = run.manifest, t = m.totals || {}, d = m.dataset || {};
    const hosts = (m.ranks || []).map(function (r) {
      return r.host + (r.gpu ? ' gpu' + r.gpu.device : '');
    }).join(', ');
    const resumes = run.starts.filter(function (s) { return s.resumed; }).map(function (s) {
      return 'at segment ' + s.first_segment + ' (' + s.world_size + ' ranks, ' + new Date(s.time * 1000).toISOString() + ')';
    });
    const methods = Object.keys(t).filter(function (k) { return ['fallbacks', 'seconds', 'resumed_at_segment'].indexOf(k) < 0; })
      .map(function (k) { return k + ' ' + t[k]; }).join(', ');
    return [
      ['tool', (m.tool || {}).name + ' ' + (m.tool || {}).version + ' (' + (m.tool || {}).commit + ')'],
      ['recipe', (m.recipe || {}).origin + ' (fnv1a64 ' + (m.recipe || {}).fnv1a64 + ')'],
      ['source', (m.source || {}).dir + ', ' + (m.source || {}).mtp_stages + ' MTP stage(s)'],
      ['world size', m.world_size],
      ['forward', (m.forward || {}).device + ', ' + (m.forward || {}).numeric_mode],
      ['hosts', hosts],
      ['samples / tokens', m.samples + ' / ' + m.tokens],
      ['dataset', (d.files || []).map(function (f) { return f.path + ' (' + f.records + ' records)'; }).join(', ') +
                  (d.samples_hash ? ', samples hash ' + d.samples_hash : '')],
      ['modules', methods],
      ['fallbacks', t.fallbacks],
      ['seconds (last process)', t.seconds === undefined ? '' : t.seconds.toFixed(1)],
      ['resumes', resumes.length ? resumes.join('; ') : 'none'],
      ['eval', run.eval ? 'KL ' + num(run.eval.kl_mean) + ', top-1 ' + num(run.eval.top1_agreement) + ', perplexity ' +
                          num(run.eval.perplexity) + ' (' + run.eval.samples + ' samples)' : 'not run (see README.md)']
    ];
  }
  const table = el('table');
  const head = el('tr');
  head.appendChild(el('th', {}, ''));
  runs.forEach(function (run) { head.appendChild(el('th', {}, run.label)); });
  table.appendChild(head);
  const facts = runs.map(fact);
  facts[0].forEach(function (row, r) {
    const tr = el('tr');
    tr.appendChild(el('th', {}, row[0]));
    facts.forEach(function (f) { tr.appendChild(el('td', {}, String(f[r][1]))); });
    table.appendChild(tr);
  });
  document.getElementById('facts').appendChild(table);

  status.setAttribute('data-plots', String(plots));
  if (errors.length) status.setAttribute('data-error', errors.join('; '));
  status.textContent = plots + ' plots drawn' + (errors.length ? '; errors: ' + errors.join('; ') : '');
})();
