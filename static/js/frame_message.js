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
