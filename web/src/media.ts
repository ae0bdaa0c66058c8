/**
 * The call's audio in the page: the microphone request, the remote stream in an unmuted
 * `<audio autoplay>` (without it Chromium's inbound-rtp `audioLevel` stays 0), level meters of
 * both directions (WebAudio AnalyserNode, read ~10 times a second), and the numbers the
 * Chromium tests read through `window.wicMedia` (getStats, the remote audio's peak frequency).
 *
 * Owns: the AudioContext, the analysers and the current RTCPeerConnection reference. Must not
 * touch: SIP, the state machine, the DOM other than the `<audio>` element it is handed.
 */

const PROCESSING_KEY = 'wic.audio_processing';

/** The tab's sessionStorage, or null where the browser refuses it (private modes). */
export function tabStorage(): Storage | null {
  try {
    return sessionStorage;
  } catch {
    return null;
  }
}

/**
 * `?audio_processing=off` turns echo cancellation, noise suppression and AGC off (tests: the
 * fake microphone's tone is crushed by them). The choice is kept in the tab's sessionStorage,
 * because the sign-in redirect comes back to the bare redirect URI; `?audio_processing=on`
 * turns them back on.
 */
export function audioProcessingWanted(search: string, storage: Pick<Storage, 'getItem' | 'setItem'> | null): boolean {
  const asked = new URLSearchParams(search).get('audio_processing');
  if (asked !== null) {
    try {
      storage?.setItem(PROCESSING_KEY, asked);
    } catch {
      // No storage: the choice lasts until the next page load.
    }
    return asked !== 'off';
  }
  try {
    return storage?.getItem(PROCESSING_KEY) !== 'off';
  } catch {
    return true;
  }
}

/** What the WIC asks getUserMedia for: audio only, processing as wanted. */
export function micConstraints(processing: boolean): MediaStreamConstraints {
  return {
    audio: { echoCancellation: processing, noiseSuppression: processing, autoGainControl: processing },
    video: false,
  };
}

/**
 * 0..1 from time-domain samples: RMS scaled so that a full-scale sine reads 1 (a sine of
 * amplitude a reads about a).
 */
export function levelOf(samples: Float32Array): number {
  if (samples.length === 0) return 0;
  let sum = 0;
  for (let i = 0; i < samples.length; i += 1) sum += samples[i] * samples[i];
  const v = Math.sqrt(sum / samples.length) * Math.SQRT2;
  return Number.isFinite(v) ? Math.min(1, v) : 0;
}

/** The frequency (Hz) of the strongest bin of an FFT magnitude array (dB), bin 0 skipped. */
export function peakOf(bins: Float32Array, sampleRate: number, fftSize: number): number {
  let best = -Infinity;
  let at = 0;
  for (let i = 1; i < bins.length; i += 1) {
    if (bins[i] > best) {
      best = bins[i];
      at = i;
    }
  }
  return at === 0 || best === -Infinity ? 0 : (at * sampleRate) / fftSize;
}

export interface RtpStats {
  packetsSent: number;
  packetsReceived: number;
  bytesReceived: number;
  audioLevel: number;
  /** mimeType of the codec in use, e.g. "audio/opus" or "audio/PCMA"; '' when none yet. */
  codec: string;
}

const REMOTE_FFT = 8192;
const LOCAL_FFT = 2048;
const METER_MS = 100;

interface Tap {
  track: MediaStreamTrack;
  source: MediaStreamAudioSourceNode;
  analyser: AnalyserNode;
}

export class CallAudio {
  private ctx: AudioContext | null = null;
  private pc: RTCPeerConnection | null = null;
  private local: Tap | null = null;
  private remote: Tap | null = null;
  private timer: ReturnType<typeof setInterval> | null = null;
  private buf = new Float32Array(REMOTE_FFT);

  constructor(
    private readonly audioEl: HTMLAudioElement,
    private readonly onLevels: (out: number, inn: number) => void,
  ) {}

  /** Creates or resumes the AudioContext; call from a click (autoplay policy). */
  wake(): void {
    try {
      if (!this.ctx) this.ctx = new AudioContext();
      if (this.ctx.state === 'suspended') void this.ctx.resume().catch(() => {});
    } catch {
      // No WebAudio: the meters stay at 0, the call works.
    }
  }

  /** The call's peer connection: its remote track is played and both directions metered. */
  attach(pc: RTCPeerConnection): void {
    this.detach();
    this.wake();
    this.pc = pc;
    pc.addEventListener('track', (e) => {
      if (this.pc !== pc || e.track.kind !== 'audio') return;
      const stream = e.streams[0] ?? new MediaStream([e.track]);
      this.audioEl.srcObject = stream;
      this.audioEl.muted = false;
      void this.audioEl.play().catch(() => {
        // Autoplay refused (no gesture yet): the next click's wake() lets it play.
      });
    });
    this.timer = setInterval(() => this.tick(), METER_MS);
  }

  /** The call is over: meters to 0, playback stopped, taps released. */
  detach(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    this.untap(this.local);
    this.untap(this.remote);
    this.local = null;
    this.remote = null;
    this.pc = null;
    this.audioEl.srcObject = null;
    this.onLevels(0, 0);
  }

  peerConnection(): RTCPeerConnection | null {
    return this.pc;
  }

  async stats(): Promise<RtpStats> {
    const out: RtpStats = { packetsSent: 0, packetsReceived: 0, bytesReceived: 0, audioLevel: 0, codec: '' };
    const pc = this.pc;
    if (!pc) return out;
    const report = await pc.getStats();
    const codecs = new Map<string, string>();
    let codecId = '';
    report.forEach((s: Record<string, unknown>) => {
      if (s.type === 'codec' && typeof s.id === 'string') codecs.set(s.id, String(s.mimeType ?? ''));
      if (s.kind !== 'audio' && s.mediaType !== 'audio') return;
      if (s.type === 'outbound-rtp') {
        out.packetsSent += Number(s.packetsSent ?? 0);
        if (!codecId && typeof s.codecId === 'string') codecId = s.codecId;
      } else if (s.type === 'inbound-rtp') {
        out.packetsReceived += Number(s.packetsReceived ?? 0);
        out.bytesReceived += Number(s.bytesReceived ?? 0);
        out.audioLevel = Math.max(out.audioLevel, Number(s.audioLevel ?? 0));
        if (typeof s.codecId === 'string') codecId = s.codecId;
      }
    });
    out.codec = codecs.get(codecId) ?? '';
    return out;
  }

  /** The peak frequency (Hz) of the remote audio now; 0 when there is none. */
  peakHz(): number {
    const r = this.tapRemote();
    if (!r || !this.ctx) return 0;
    const bins = new Float32Array(r.analyser.frequencyBinCount);
    r.analyser.getFloatFrequencyData(bins);
    return peakOf(bins, this.ctx.sampleRate, r.analyser.fftSize);
  }

  private tick(): void {
    const l = this.tapLocal();
    const r = this.tapRemote();
    this.onLevels(l ? this.read(l) : 0, r ? this.read(r) : 0);
  }

  private read(t: Tap): number {
    const n = t.analyser.fftSize;
    const b = n === this.buf.length ? this.buf : new Float32Array(n);
    t.analyser.getFloatTimeDomainData(b);
    return levelOf(b);
  }

  /** The track we send (JsSIP adds it after the peer connection exists, so looked up late). */
  private tapLocal(): Tap | null {
    const track = this.pc?.getSenders().map((s) => s.track).find((t) => t && t.kind === 'audio') ?? null;
    this.local = this.retap(this.local, track, LOCAL_FFT);
    return this.local;
  }

  private tapRemote(): Tap | null {
    const track = this.pc?.getReceivers().map((r) => r.track).find((t) => t && t.kind === 'audio' && t.readyState === 'live') ?? null;
    this.remote = this.retap(this.remote, track, REMOTE_FFT);
    return this.remote;
  }

  private retap(tap: Tap | null, track: MediaStreamTrack | null, fftSize: number): Tap | null {
    if (tap && tap.track === track) return tap;
    this.untap(tap);
    if (!track || !this.ctx) return null;
    try {
      const source = this.ctx.createMediaStreamSource(new MediaStream([track]));
      const analyser = this.ctx.createAnalyser();
      analyser.fftSize = fftSize;
      analyser.smoothingTimeConstant = 0;
      source.connect(analyser); // not to the destination: the <audio> element plays the sound
      return { track, source, analyser };
    } catch {
      return null;
    }
  }

  private untap(t: Tap | null): void {
    if (!t) return;
    try {
      t.source.disconnect();
    } catch {
      // Already disconnected.
    }
  }
}

declare global {
  interface Window {
    /** Test hooks for the Chromium audio tests (web/README.md). */
    wicMedia: {
      stats(): Promise<RtpStats>;
      peakHz(): Promise<number>;
      pc(): RTCPeerConnection | null;
      machine(): { state: string; ignored: number; lastIgnored: string };
    };
  }
}

/** `window.wicMedia`: the current call's numbers, and the state machine's state and counts. */
export function installTestHooks(audio: CallAudio, machine: () => { state: { kind: string }; ignored: number; lastIgnored: string }): void {
  window.wicMedia = {
    stats: () => audio.stats(),
    peakHz: async () => audio.peakHz(),
    pc: () => audio.peerConnection(),
    machine: () => {
      const m = machine();
      return { state: m.state.kind, ignored: m.ignored, lastIgnored: m.lastIgnored };
    },
  };
}
