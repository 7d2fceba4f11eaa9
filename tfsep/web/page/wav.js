// 32-bit float WAV files from channel arrays, for playing and downloading stems.

/** A Blob holding a WAVE_FORMAT_IEEE_FLOAT file of the Float32Array `channels` (one per channel) at `rate`. */
export function wavBlob(channels, rate) {
  const count = channels.length, samples = channels[0].length, bytes = samples * count * 4;
  const view = new DataView(new ArrayBuffer(44 + bytes));
  const text = (offset, value) => [...value].forEach((c, i) => view.setUint8(offset + i, c.charCodeAt(0)));
  text(0, "RIFF"); view.setUint32(4, 36 + bytes, true); text(8, "WAVE");
  text(12, "fmt "); view.setUint32(16, 16, true); view.setUint16(20, 3, true); view.setUint16(22, count, true);
  view.setUint32(24, rate, true); view.setUint32(28, rate * count * 4, true);
  view.setUint16(32, count * 4, true); view.setUint16(34, 32, true);
  text(36, "data"); view.setUint32(40, bytes, true);
  const data = new Float32Array(view.buffer, 44);
  for (let c = 0; c < count; c++) for (let i = 0; i < samples; i++) data[i * count + c] = channels[c][i];
  return new Blob([view.buffer], { type: "audio/wav" });
}
