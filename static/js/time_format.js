// Times as the pages write them, shared by the player and the cameras grid so that both say
// the same thing: `clock` for a moment ("14:03:07"), `age` for a duration ("4 s", "3 min").
//
// `age` must read exactly like the templates' `age` filter (cameras/templatetags/camera_health.py),
// since a line rendered by the server is later rewritten by the page: same thresholds, and the
// same rounding as Python's `f"{x:.0f}"`, which rounds halves to even (2.5 -> 2), not up.

export function clock(ms) {
  return new Date(ms).toLocaleTimeString([], {
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
    hourCycle: "h23",
  });
}

function roundHalfToEven(value) {
  const rounded = Math.round(value);
  return Math.abs(value % 1) === 0.5 ? 2 * Math.round(value / 2) : rounded;
}

// Seconds rounded to the unit that matters at that size; "" for an unknown age (null).
export function age(seconds) {
  if (seconds == null) return "";
  if (seconds < 90) return `${roundHalfToEven(seconds)} s`;
  if (seconds < 90 * 60) return `${roundHalfToEven(seconds / 60)} min`;
  if (seconds < 48 * 3600) return `${roundHalfToEven(seconds / 3600)} h`;
  return `${roundHalfToEven(seconds / 86400)} days`;
}
