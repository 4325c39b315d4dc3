// The player's reconnect policy, on its own so that it can be read (and tested) without a page.
//
// The first five tries follow the seed: 1 s, then doubling (1, 2, 4, 8, 16 s). After them the
// player does not give up: it keeps trying every `steadyMs` (30 s by default) for as long as the
// page is visible. A wall display left open across a restart must come back by itself.

export const FIRST_TRIES = 5;
export const FIRST_DELAY_MS = 1000;
export const DEFAULT_STEADY_DELAY_MS = 30_000;

// How long to wait before try number `attempt + 1` (attempt counts the failed tries so far).
export function retryDelay(attempt, steadyMs = DEFAULT_STEADY_DELAY_MS) {
  if (attempt < FIRST_TRIES) return FIRST_DELAY_MS * 2 ** attempt;
  return steadyMs;
}
