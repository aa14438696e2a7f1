// Renders /openapi.json as a readable API reference. Served by the gateway itself: no
// framework, no outside assets.
'use strict';

const root = document.getElementById('docs');

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function refName(ref) {
  return ref.split('/').pop();
}

// A compact, readable outline of a schema: {field: type, …}.
function describe(schema, spec, depth) {
  if (!schema) return 'any';
  if (schema.$ref) {
    const name = refName(schema.$ref);
    if (depth > 2) return name;
    return describe(spec.components.schemas[name], spec, depth + 1);
  }
  const alts = schema.oneOf || schema.anyOf;
  if (alts) return alts.map((s) => describe(s, spec, depth)).join('  |  ');
  if (schema.allOf) return schema.allOf.map((s) => describe(s, spec, depth)).join(' & ');
  let type = Array.isArray(schema.type) ? schema.type.filter((t) => t !== 'null').join('|') : schema.type;
  if (type === 'array') return '[' + describe(schema.items, spec, depth) + ']';
  if (type === 'object' || schema.properties) {
    const req = new Set(schema.required || []);
    const fields = Object.entries(schema.properties || {}).map(([k, v]) => {
      return '  '.repeat(depth + 1) + k + (req.has(k) ? '' : '?') + ': ' + describe(v, spec, depth + 1);
    });
    return fields.length ? '{\n' + fields.join(',\n') + '\n' + '  '.repeat(depth) + '}' : 'object';
  }
  const limits = [];
  if (schema.minimum !== undefined) limits.push('≥ ' + schema.minimum);
  if (schema.maximum !== undefined) limits.push('≤ ' + schema.maximum);
  if (schema.minLength !== undefined) limits.push('len ≥ ' + schema.minLength);
  if (schema.maxLength !== undefined) limits.push('len ≤ ' + schema.maxLength);
  if (schema.enum) return schema.enum.map((v) => JSON.stringify(v)).join(' | ');
  return (type || 'any') + (schema.format ? ' (' + schema.format + ')' : '') + (limits.length ? ' [' + limits.join(', ') + ']' : '');
}

function operation(method, path, op, spec) {
  const box = el('section', 'op');
  const head = el('h3', 'op-head');
  head.append(el('span', 'method m-' + method, method.toUpperCase()), el('code', 'path', path));
  box.append(head);
  if (op.summary) box.append(el('p', 'summary', op.summary));
  if (op.description) box.append(el('p', 'desc', op.description));
  const sec = (op.security || []).flatMap((s) => Object.keys(s));
  if (sec.length) box.append(el('p', 'auth', 'Bearer: ' + sec.join(' or ')));
  if (op.parameters && op.parameters.length) {
    const list = el('ul', 'params');
    for (const p of op.parameters) {
      list.append(el('li', '', p.name + ' (' + p.in + (p.required ? ', required' : '') + ')' + (p.description ? ' — ' + p.description : '')));
    }
    box.append(el('h4', '', 'Parameters'), list);
  }
  const body = op.requestBody && op.requestBody.content && op.requestBody.content['application/json'];
  if (body) box.append(el('h4', '', 'Request body'), el('pre', '', describe(body.schema, spec, 0)));
  const responses = el('dl', 'responses');
  for (const [status, r] of Object.entries(op.responses || {})) {
    const content = r.content || {};
    const [type, media] = Object.entries(content)[0] || [];
    const dd = el('dd');
    dd.append(el('span', '', (r.description || '') + (type ? ' (' + Object.keys(content).join(', ') + ')' : '')));
    if (media && media.schema && type === 'application/json') {
      const details = el('details');
      details.append(el('summary', '', 'shape'), el('pre', '', describe(media.schema, spec, 0)));
      dd.append(details);
    }
    responses.append(el('dt', 's' + status[0], status), dd);
  }
  box.append(el('h4', '', 'Responses'), responses);
  return box;
}

async function main() {
  try {
    const spec = await (await fetch('/openapi.json')).json();
    root.textContent = '';
    root.append(el('h1', '', spec.info.title + ' API ' + spec.info.version), el('p', 'intro', spec.info.description || ''));
    const nav = el('nav');
    root.append(nav);
    const byTag = new Map();
    for (const [path, item] of Object.entries(spec.paths)) {
      for (const [method, op] of Object.entries(item)) {
        const tag = (op.tags && op.tags[0]) || 'other';
        if (!byTag.has(tag)) byTag.set(tag, []);
        byTag.get(tag).push([method, path, op]);
      }
    }
    for (const t of spec.tags || []) if (!byTag.has(t.name)) byTag.set(t.name, []);
    for (const [tag, ops] of byTag) {
      if (!ops.length) continue;
      const info = (spec.tags || []).find((t) => t.name === tag);
      const part = el('section', 'tag');
      part.id = 'tag-' + tag;
      part.append(el('h2', '', tag));
      if (info && info.description) part.append(el('p', 'tag-desc', info.description));
      for (const [method, path, op] of ops) part.append(operation(method, path, op, spec));
      root.append(part);
      const link = el('a', '', tag);
      link.href = '#tag-' + tag;
      nav.append(link);
    }
  } catch (e) {
    root.textContent = 'Could not load /openapi.json: ' + e;
  }
}

main();
