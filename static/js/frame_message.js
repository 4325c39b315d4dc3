// What the stream's messages carry, read the same way by every page that shows them.
//
// A binary stream message (`?format=binary`): 4-byte big-endian header length, the JSON header
// (FrameData without "frame"), then the JPEG bytes.

export function parse(buffer) {
  const view = new DataView(buffer);
  const headerLength = view.getUint32(0);
  const headerBytes = new Uint8Array(buffer, 4, headerLength);
  const header = JSON.parse(new TextDecoder().decode(headerBytes));
  const jpeg = new Blob([new Uint8Array(buffer, 4 + headerLength)], { type: "image/jpeg" });
  return { header, jpeg };
}

// "person #3 (91%)": a tracked object's id says which box is which person from frame to
// frame; motion boxes are not tracked and have none.
export function boxLabel(detection) {
  const track = Number.isInteger(detection.track_id) ? ` #${detection.track_id}` : "";
  return `${detection.class}${track} (${(detection.confidence * 100).toFixed(0)}%)`;
}
