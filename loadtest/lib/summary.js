// handleSummary for every script: a plain-text summary on stdout (written here: no remote
// jslib import, so it works offline) and the full k6 summary data as JSON in
// RESULTS_DIR/<script>-summary.json (or SUMMARY_JSON; "none" for no file).
//
//   export const handleSummary = summary('load');

import { RESULTS_DIR } from './config.js';

function ms(v) {
  if (v === undefined || v === null || Number.isNaN(v)) return '-';
  if (v >= 1000) return `${(v / 1000).toFixed(2)}s`;
  if (v >= 1) return `${v.toFixed(2)}ms`;
  return `${(v * 1000).toFixed(0)}µs`;
}

function num(v) {
  if (v === undefined || v === null) return '-';
  if (Number.isInteger(v)) return String(v);
  return Math.abs(v) >= 100 ? v.toFixed(0) : v.toFixed(3);
}

function bytes(v) {
  const units = ['B', 'kB', 'MB', 'GB'];
  let u = 0;
  while (v >= 1000 && u < units.length - 1) {
    v /= 1000;
    u++;
  }
  return `${v.toFixed(u === 0 ? 0 : 1)} ${units[u]}`;
}

function values(name, metric) {
  const v = metric.values;
  switch (metric.type) {
    case 'trend': {
      const f = metric.contains === 'time' ? ms : num;
      const order = ['avg', 'min', 'med', 'max'];
      const rank = (k) => (order.indexOf(k) >= 0 ? order.indexOf(k) : k === 'count' ? 1e9 : 10 + parseFloat(k.slice(2)));
      return Object.keys(v)
        .sort((a, b) => rank(a) - rank(b))
        .map((k) => (k === 'count' ? `count=${v[k]}` : `${k}=${f(v[k])}`))
        .join(' ');
    }
    case 'rate':
      return `${(100 * v.rate).toFixed(2)}% (${v.passes} of ${v.passes + v.fails})`;
    case 'counter':
      return metric.contains === 'data'
        ? `${bytes(v.count)} ${bytes(v.rate)}/s`
        : `${v.count} ${v.rate.toFixed(2)}/s`;
    case 'gauge':
      return `value=${num(v.value)} min=${num(v.min)} max=${num(v.max)}`;
    default:
      return JSON.stringify(v);
  }
}

function thresholdValue(metric, expression) {
  const m = /^\s*([a-z]+(?:\([0-9.]+\))?)\s*[<>=!]/.exec(expression);
  if (!m) return '';
  const stat = m[1];
  const v = metric.values[stat];
  if (v === undefined) return '';
  if (metric.type === 'trend' && metric.contains === 'time') return `${stat}=${ms(v)}`;
  if (metric.type === 'rate') return `${stat}=${(100 * v).toFixed(2)}%`;
  return `${stat}=${num(v)}`;
}

function collectChecks(group, out) {
  for (const c of group.checks || []) out.push(c);
  for (const g of group.groups || []) collectChecks(g, out);
  return out;
}

/** The text summary. */
export function textSummary(script, data) {
  const lines = [];
  const state = data.state || {};
  lines.push('');
  lines.push(`sessiond ${script}: ${((state.testRunDurationMs || 0) / 1000).toFixed(1)} s`);

  const names = Object.keys(data.metrics).sort();
  const withThresholds = names.filter((n) => data.metrics[n].thresholds);
  let breached = 0;
  if (withThresholds.length) {
    lines.push('');
    lines.push('THRESHOLDS');
    for (const name of withThresholds) {
      const metric = data.metrics[name];
      lines.push(`  ${name}`);
      for (const expr of Object.keys(metric.thresholds)) {
        const ok = metric.thresholds[expr].ok;
        if (!ok) breached++;
        lines.push(`    ${ok ? 'ok    ' : 'FAILED'} '${expr}' ${thresholdValue(metric, expr)}`);
      }
    }
  }

  const checks = collectChecks(data.root_group || {}, []);
  if (checks.length) {
    lines.push('');
    lines.push('CHECKS');
    for (const c of checks) {
      const total = c.passes + c.fails;
      lines.push(`  ${c.fails === 0 ? 'ok    ' : 'FAILED'} ${c.name}: ${c.passes}/${total}`);
    }
  }

  lines.push('');
  lines.push('METRICS');
  const width = Math.min(60, Math.max(...names.map((n) => n.length)) + 2);
  for (const name of names) {
    lines.push(`  ${(name + ' ').padEnd(width, '.')} ${values(name, data.metrics[name])}`);
  }
  lines.push('');
  lines.push(
    breached
      ? `${breached} threshold(s) breached: k6 exits with code 99.`
      : withThresholds.length
        ? 'All thresholds met.'
        : 'No thresholds.',
  );
  lines.push('');
  return lines.join('\n');
}

/** Build the handleSummary of a script. */
export function summary(script) {
  return function handleSummary(data) {
    const out = { stdout: textSummary(script, data) };
    const target = __ENV.SUMMARY_JSON || `${RESULTS_DIR}/${script}-summary.json`;
    if (target !== 'none') {
      // The pool's session tokens are credentials: keep them out of the file.
      const setup = data.setup_data;
      if (setup && Array.isArray(setup.tokens)) setup.tokens = `<${setup.tokens.length} tokens>`;
      out[target] = JSON.stringify(data, null, 2);
    }
    return out;
  };
}
