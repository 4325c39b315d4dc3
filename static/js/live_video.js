// Live H.264 in a <video> through Media Source Extensions, held at the live edge.
//
// The stream (`?format=h264`) sends binary messages framed as `?format=binary` does (4-byte
// big-endian header length, JSON header, payload): an `init` message (the fMP4 init segment of
// one encoder run, `stream`), then `video` messages of one frame each (a moof+mdat fragment, its
// capture `timestamp`, its `media_time` on the video timeline and its detections). LiveVideo
// appends the fragments to a SourceBuffer and keeps every header by media_time, so the player
// can draw the boxes of the very frame the <video> shows (requestVideoFrameCallback's
// `mediaTime`).
//
// The live edge: a live picture must not play from a buffer. Whenever more than MAX_AHEAD_S is
// buffered ahead of the playhead (a burst on join, a tab that was in the background, a hiccup)
// it seeks to the newest frame; it keeps play() going and removes what is older than KEEP_S, so
// memory stays bounded however long the page stays open. Each `start()` (a new init, a new
// socket) begins a fresh MediaSource: media times restart with each encoder run.

export const H264_CODEC = "avc1.42c01e";
const MAX_AHEAD_S = 0.15;
const CATCH_UP_FRAMES = 1.5; // more than this many frames buffered ahead: catch up...
const CATCH_UP_RATE = 1.5; // ...playing this much faster
const KEEP_S = 3; // buffer kept behind the playhead (a key frame comes every 1–2 s)
const TRIM_EVERY_MS = 2000;
const MAX_HEADERS = 600;

export function h264Supported(codec = H264_CODEC) {
  return (
    typeof window.MediaSource === "function" &&
    typeof window.MediaSource.isTypeSupported === "function" &&
    window.MediaSource.isTypeSupported(`video/mp4; codecs="${codec}"`)
  );
}

// A binary stream message: its JSON header and the payload after it (a JPEG, an fMP4 segment).
export function parseMessage(buffer) {
  const view = new DataView(buffer);
  const headerLength = view.getUint32(0);
  const header = JSON.parse(new TextDecoder().decode(new Uint8Array(buffer, 4, headerLength)));
  return { header, payload: new Uint8Array(buffer, 4 + headerLength) };
}

export class LiveVideo {
  // onFrame(header, metadata): a frame was presented (header: the one of its media_time, or
  // null). onFailure(reason): MSE cannot play this stream; the player falls back to JPEG.
  constructor(video, { onFrame, onFailure }) {
    this.video = video;
    this.onFrame = onFrame;
    this.onFailure = onFailure;
    this.generation = 0;
    this.mediaSource = null;
    this.sourceBuffer = null;
    this.objectUrl = null;
    this.queue = [];
    this.headers = []; // video headers of this stream, in media_time order
    this.stream = null;
    this.frameDuration = 1 / 30;
    this.lastTrimAt = 0;
    this.seeks = 0;
    this.appendedAt = 0; // when the first fragment of this stream was appended
    this.presentedAt = 0; // when a frame of this stream was last presented
    this.presented = 0; // frames presented of this stream
    this.failed = false;
    this.lastMediaTime = -1;
    video.addEventListener("error", () => {
      if (this.mediaSource) this.fail(`the video failed: ${video.error && video.error.message}`);
    });
    // A paused <video> (autoplay refused, a seek at the end of the buffer) is started again.
    video.addEventListener("pause", () => {
      if (this.mediaSource) this.resume();
    });
    this.watchFrames();
  }

  get active() {
    return this.mediaSource !== null;
  }

  // A new encoder run (or a new socket): a fresh MediaSource for its init segment.
  start(header, payload) {
    if (!h264Supported(header.codec || H264_CODEC)) {
      this.fail(`the browser cannot play ${header.codec}`);
      return;
    }
    this.stop();
    const generation = ++this.generation;
    this.stream = header.stream;
    this.queue = [payload];
    const mediaSource = new MediaSource();
    this.mediaSource = mediaSource;
    this.objectUrl = URL.createObjectURL(mediaSource);
    mediaSource.addEventListener(
      "sourceopen",
      () => {
        if (generation !== this.generation) return;
        URL.revokeObjectURL(this.objectUrl);
        this.objectUrl = null;
        try {
          const sourceBuffer = mediaSource.addSourceBuffer(`video/mp4; codecs="${header.codec}"`);
          sourceBuffer.mode = "segments";
          sourceBuffer.addEventListener("updateend", () => {
            if (generation === this.generation) this.pump();
          });
          sourceBuffer.addEventListener("error", () => {
            if (generation === this.generation) this.fail("the SourceBuffer failed");
          });
          this.sourceBuffer = sourceBuffer;
        } catch (error) {
          this.fail(`no SourceBuffer: ${error.message}`);
          return;
        }
        this.pump();
      },
      { once: true },
    );
    if (header.width && header.height) {
      this.video.width = header.width;
      this.video.height = header.height;
    }
    this.video.src = this.objectUrl;
    this.resume();
  }

  // One frame's fragment, with its header.
  append(header, payload) {
    if (!this.mediaSource || header.stream !== this.stream) return; // no init for it yet
    const previous = this.headers[this.headers.length - 1];
    if (previous && header.seq > previous.seq && header.media_time > previous.media_time) {
      this.frameDuration = (header.media_time - previous.media_time) / (header.seq - previous.seq);
    }
    this.headers.push(header);
    const excess = this.headers.length - MAX_HEADERS;
    if (excess > 0) this.headers.splice(0, excess);
    this.queue.push(payload);
    if (!this.appendedAt) this.appendedAt = Date.now();
    this.pump();
  }

  stop() {
    this.generation += 1;
    const { mediaSource, sourceBuffer } = this;
    this.mediaSource = null;
    this.sourceBuffer = null;
    this.queue = [];
    this.headers = [];
    this.stream = null;
    this.appendedAt = 0;
    this.presentedAt = 0;
    this.presented = 0;
    this.lastMediaTime = -1;
    if (this.objectUrl) URL.revokeObjectURL(this.objectUrl);
    this.objectUrl = null;
    const open = mediaSource && mediaSource.readyState === "open";
    if (open && sourceBuffer && !sourceBuffer.updating) {
      try {
        mediaSource.endOfStream();
      } catch (error) {
        // Ending a stream that is going away anyway.
      }
    }
    if (mediaSource) {
      this.video.removeAttribute("src");
      this.video.load();
    }
  }

  fail(reason) {
    if (this.failed) return;
    this.failed = true;
    this.stop();
    this.onFailure(reason);
  }

  // How far the buffer reaches past the playhead, in seconds.
  bufferedAhead() {
    const { buffered } = this.video;
    if (!buffered.length) return 0;
    return Math.max(0, buffered.end(buffered.length - 1) - this.video.currentTime);
  }

  // The header of the frame at `mediaTime` (the nearest one), or null.
  headerAt(mediaTime) {
    const { headers } = this;
    if (!headers.length) return null;
    let low = 0;
    let high = headers.length - 1;
    while (low < high) {
      const middle = (low + high) >> 1;
      if (headers[middle].media_time < mediaTime) low = middle + 1;
      else high = middle;
    }
    // headers[low] is the first at or after mediaTime; the one before may be nearer.
    if (low > 0 && mediaTime - headers[low - 1].media_time < headers[low].media_time - mediaTime) {
      low -= 1;
    }
    return headers[low];
  }

  resume() {
    if (this.video.paused && this.mediaSource) this.video.play().catch(() => {});
  }

  pump() {
    const { sourceBuffer } = this;
    if (!sourceBuffer || sourceBuffer.updating) return;
    this.holdLiveEdge();
    if (this.trimIfDue()) return; // its updateend pumps again
    if (!this.queue.length) return;
    // A burst (joining mid-GOP, a slow tab) goes in as one append.
    const parts = this.queue;
    this.queue = [];
    let data = parts[0];
    if (parts.length > 1) {
      data = new Uint8Array(parts.reduce((sum, part) => sum + part.byteLength, 0));
      let offset = 0;
      for (const part of parts) {
        data.set(part, offset);
        offset += part.byteLength;
      }
    }
    try {
      sourceBuffer.appendBuffer(data);
    } catch (error) {
      if (error.name === "QuotaExceededError") {
        // Full although we trim: start again from the next init (the socket is reopened).
        this.fail("the video buffer is full");
      } else {
        this.fail(`appendBuffer: ${error.message}`);
      }
    }
  }

  // Never more than MAX_AHEAD_S ahead of the playhead, and never before the buffer's start.
  holdLiveEdge() {
    const { video } = this;
    const { buffered } = video;
    if (!buffered.length) return;
    const last = buffered.length - 1;
    const start = buffered.start(last);
    const end = buffered.end(last);
    const now = video.currentTime;
    const ahead = end - now;
    if (now < start || ahead > MAX_AHEAD_S) {
      // Into the newest frame, which is then shown at once.
      video.currentTime = Math.max(start, end - this.frameDuration / 2);
      this.seeks += 1;
      video.playbackRate = 1;
    } else {
      // A frame or two behind (frames arrive unevenly): play a little faster until the newest
      // is shown, rather than keep that delay for good (the stream comes in at its own rate).
      const behind = ahead > CATCH_UP_FRAMES * this.frameDuration;
      const rate = behind ? CATCH_UP_RATE : 1;
      if (video.playbackRate !== rate) video.playbackRate = rate;
    }
    this.resume();
  }

  // Removes what lies more than KEEP_S behind the playhead, every TRIM_EVERY_MS. True when a
  // removal started.
  trimIfDue() {
    const nowMs = Date.now();
    if (nowMs - this.lastTrimAt < TRIM_EVERY_MS) return false;
    this.lastTrimAt = nowMs;
    const { buffered } = this.sourceBuffer;
    if (!buffered.length) return false;
    const until = this.video.currentTime - KEEP_S;
    const oldest = this.headers.findIndex((header) => header.media_time >= until - 1);
    if (oldest > 0) this.headers.splice(0, oldest);
    if (until <= buffered.start(0)) return false;
    try {
      this.sourceBuffer.remove(buffered.start(0), until);
      return true;
    } catch (error) {
      return false;
    }
  }

  // Every frame the <video> presents: requestVideoFrameCallback where there is one, else the
  // playhead seen at each animation frame.
  watchFrames() {
    const { video } = this;
    const presented = (mediaTime, metadata) => {
      if (!this.mediaSource) return;
      const header = this.headerAt(mediaTime);
      // The same frame seen again (the playhead moves within a frame between animation frames).
      const frame = header ? header.media_time : mediaTime;
      if (frame === this.lastMediaTime) return;
      this.lastMediaTime = frame;
      this.presented += 1;
      this.presentedAt = Date.now();
      this.onFrame(header, metadata);
    };
    if (typeof video.requestVideoFrameCallback === "function") {
      const onVideoFrame = (now, metadata) => {
        video.requestVideoFrameCallback(onVideoFrame);
        presented(metadata.mediaTime, metadata);
      };
      video.requestVideoFrameCallback(onVideoFrame);
    } else {
      const onAnimationFrame = (now) => {
        requestAnimationFrame(onAnimationFrame);
        if (video.readyState >= 2) {
          // The frame on screen is the last one that began at or before the playhead.
          const mediaTime = video.currentTime - this.frameDuration / 2;
          presented(mediaTime, { mediaTime, presentationTime: now });
        }
      };
      requestAnimationFrame(onAnimationFrame);
    }
  }
}
