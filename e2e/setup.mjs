// Prepares a running gateway for the fan-journey test (see prepareConcert in lib.mjs): a concert
// created through the admin API, its admission paused, a few other fans already in line.
// Writes the state as JSON to the file given as the only argument.
//
//   QG_E2E_BASE_URL=http://127.0.0.1:18091 QG_E2E_ADMIN_TOKEN=… node e2e/setup.mjs state.json

import { writeFileSync } from 'node:fs';
import { prepareConcert, ADMIN_TOKEN } from './lib.mjs';

const out = process.argv[2];
if (!out || !ADMIN_TOKEN) {
  console.error('usage: QG_E2E_BASE_URL=… QG_E2E_ADMIN_TOKEN=… node e2e/setup.mjs STATE_FILE');
  process.exit(2);
}
const state = await prepareConcert({ ahead: Number(process.env.QG_E2E_AHEAD || 3) });
writeFileSync(out, JSON.stringify(state, null, 2));
const { concert, ahead } = state;
console.log(`[e2e] setup: concert ${concert.concert_id} "${concert.name}" with ${concert.schedules.length} dates; ` +
  `${ahead.length} fans waiting ahead (positions ${ahead.map((u) => u.position).join(', ')}); admission paused`);
