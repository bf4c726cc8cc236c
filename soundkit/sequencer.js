"use strict";
// The explorer's step sequencer (served by explore.py as /sequencer.js; the page's own script starts it).
// A row per sound and 16 steps, each off, on or accented, played in a loop: a timer hands the notes of the
// next LOOKAHEAD_S to the Web Audio clock, which plays each at its sample. "Bounce" renders bars of the loop
// with an OfflineAudioContext at the model's rate and sends them to the server, which writes the WAV and the
// MIDI file. MIDI pads play the rows' sounds. The pattern and the rows' sounds are kept in localStorage.
// Step times and levels are soundkit/pattern.py's: stepSeconds is step_seconds, plainLevel plain_level.

const LOOKAHEAD_S = 0.12;     // notes are scheduled this far ahead of the audio clock ...
const TICK_MS = 25;           // ... by a timer that wakes this often: a late timer delays no note
const START_DELAY_S = 0.06;   // "Play": the first step sounds this long after the click
const STORE_KEY = "explorer.sequencer.v1";
const MIDI_WAIT_MS = 3000;    // how long the browser may take to answer the request for MIDI access
const LOG_SIZE = 4000;        // notes remembered (sequencer.log), for the page's tests
const OFF = 0, ON = 1, ACCENT = 2;
// A first beat, by General MIDI key (kick, snare, clap, closed and open hi-hat, toms): X accent, x on.
const FIRST_BEAT = { 36: "X.......x.x.....", 38: "....X.......X...", 39: "....x.......x...", 42: "X.x.x.x.X.x.x.x.",
                     46: "..x...x...x...x.", 41: ".............x..", 43: ".............x..", 45: "..............x." };
const STEP_MARKS = { ".": OFF, x: ON, X: ACCENT };

function stepSeconds(step, bpm, swing) {
  const sixteenth = 60 / bpm / 4;
  return step * sixteenth + (step % 2) * (2 * swing / 100 - 1) * sixteenth;
}

function loopSamples(bars, bpm, rate) { return Math.round(bars * 4 * 60 / bpm * rate); }

function plainLevel(accentDb) { return Math.pow(10, -accentDb / 20); }

function stepLevel(value, accentDb) { return value === ACCENT ? 1 : plainLevel(accentDb); }

function hit(context, destination, buffer, when, level) {
  const source = context.createBufferSource();
  const gain = context.createGain();
  source.buffer = buffer;
  gain.gain.value = level;
  source.connect(gain);
  gain.connect(destination);
  source.start(when);
}

function bytesOf(base64) {
  const text = atob(base64);
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
  return bytes;
}

function base64OfFloats(samples) {  // little-endian float32, as soundkit/pattern.py read_audio takes them
  const view = new DataView(new ArrayBuffer(samples.length * 4));
  samples.forEach((value, i) => view.setFloat32(i * 4, value, true));
  const bytes = new Uint8Array(view.buffer);
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  return btoa(text);
}

function escaped(text) { return String(text).replace(/[<>&"]/g, ""); }

class Sequencer {
  constructor() {
    this.rows = [];
    this.settings = { bpm: 120, swing: 50, accent_db: 6, bars: 2 };
    this.playing = false;
    this.log = [];
    this.late = 0;
    this.armed = null;      // the row that the sounds made above go to
    this.nextRowId = 1;
    this.midi = "";
  }

  // model: /api/model's answer; page: { call, say, soundRequest } of the page's own script.
  async start(model, page) {
    Object.assign(this, { model, page, limits: model.sequencer, element: (id) => document.getElementById(id) });
    try { this.context = new AudioContext({ sampleRate: model.sample_rate }); }
    catch (error) { this.context = new AudioContext(); }  // a rate the browser refuses: it resamples
    this.output = this.context.createGain();
    this.output.connect(this.context.destination);
    this.bindControls();
    if (!(await this.restore())) await this.firstRows();
    this.draw();
    this.ready = true;
    this.midiReady = this.connectMidi();
  }

  bindControls() {
    const $ = this.element;
    for (const [name, [low, high]] of Object.entries(this.ranges())) Object.assign($("seq-" + name), { min: low, max: high });
    for (const name of ["bpm", "swing", "accent_db", "bars"]) {
      $("seq-" + name).addEventListener("change", () => this.set({ [name]: parseFloat($("seq-" + name).value) }));
    }
    $("seq-play").addEventListener("click", () => (this.playing ? this.stop() : this.play()));
    $("seq-bounce").addEventListener("click", () => this.bounce().catch((error) => this.say(error.message, true)));
    $("seq-add").addEventListener("click", () => this.addRow(this.page.current()));
  }

  say(text, error = false) {
    const status = this.element("seq-status");
    status.textContent = text;
    status.className = error ? "error" : "";
  }

  ranges() {  // soundkit/pattern.py's, from /api/model
    return { bpm: this.limits.bpm, swing: this.limits.swing, accent_db: this.limits.accent_db, bars: [1, this.limits.max_bars] };
  }

  set(settings) {
    const limits = this.ranges();
    for (const [name, value] of Object.entries(settings)) {
      if (!(name in limits) || !Number.isFinite(value)) continue;
      const [low, high] = limits[name];
      const whole = name === "bpm" || name === "bars";
      this.settings[name] = Math.min(high, Math.max(low, whole ? Math.round(value) : value));
    }
    this.save();
    this.drawSettings();
  }

  async decoded(sound) {
    const buffer = await this.context.decodeAudioData(bytesOf(sound.wav).buffer);
    return { id: sound.id, class: sound.class || "", wav: sound.wav, buffer };
  }

  async firstRows() {
    const classes = this.model.classes.length ? this.model.classes : [""];
    for (const [index, name] of classes.slice(0, this.limits.max_rows).entries()) {
      const sound = await this.page.call("/api/sound", { mode: "new", class: name, seed: index });
      const beat = FIRST_BEAT[this.model.keys[name || this.model.no_class]] || "................";
      this.rows.push({ id: this.nextRowId++, sound: await this.decoded(sound), pending: null,
                       steps: [...beat].map((mark) => STEP_MARKS[mark]) });
    }
    this.save();
  }

  // A new sound for a row: at once when stopped; while the loop plays, from the start of the next pass.
  async replace(row, sound) {
    const ready = await this.decoded(sound);
    if (this.playing) row.pending = ready; else row.sound = ready;
    this.save();
    this.draw();
    return ready.id;
  }

  async addRow(sound) {
    if (!sound) return this.say("make a sound first", true);
    if (this.rows.length >= this.limits.max_rows) return this.say(`at most ${this.limits.max_rows} rows`, true);
    this.rows.push({ id: this.nextRowId++, sound: await this.decoded(sound), pending: null, steps: Array(this.limits.steps).fill(OFF) });
    this.save();
    this.draw();
  }

  // The explorer made a sound: an armed row takes it (see replace).
  offer(sound) { if (this.armed !== null) { const row = this.rows.find((r) => r.id === this.armed); if (row) this.replace(row, sound); } }

  play() {
    if (this.playing) return;
    this.context.resume();
    this.playing = true;
    this.pass = null;
    this.heard = [];
    this.beginPass(this.context.currentTime + START_DELAY_S);
    this.tick();
    this.timer = setInterval(() => this.tick(), TICK_MS);
    this.element("seq-play").textContent = "Stop";
    requestAnimationFrame(() => this.showStep());
  }

  stop() {
    clearInterval(this.timer);
    this.playing = false;
    for (const row of this.rows) if (row.pending) { row.sound = row.pending; row.pending = null; }
    this.element("seq-play").textContent = "Play";
    this.draw();
  }

  // A pass starts: the sounds that were waiting come in, and the tempo, swing and accent hold for the pass.
  beginPass(start) {
    let changed = false;
    for (const row of this.rows) if (row.pending) { row.sound = row.pending; row.pending = null; changed = true; }
    this.pass = { start, index: this.pass ? this.pass.index + 1 : 0, bpm: this.settings.bpm,
                  swing: this.settings.swing, accent_db: this.settings.accent_db };
    this.step = 0;
    if (changed) { this.save(); this.draw(); }
  }

  tick() {
    const horizon = this.context.currentTime + LOOKAHEAD_S;
    for (;;) {
      if (this.step === this.limits.steps) this.beginPass(this.pass.start + 4 * 60 / this.pass.bpm);
      const when = this.pass.start + stepSeconds(this.step, this.pass.bpm, this.pass.swing);
      if (when >= horizon) return;
      const late = when < this.context.currentTime;
      this.heard.push({ step: this.step, time: when });
      this.rows.forEach((row, index) => {
        const value = row.steps[this.step];
        if (value === OFF) return;
        const level = stepLevel(value, this.pass.accent_db);
        if (late) this.late += 1; else hit(this.context, this.output, row.sound.buffer, when, level);
        this.remember({ pass: this.pass.index, step: this.step, row: index, sound: row.sound.id, time: when, level, late });
      });
      this.step += 1;
    }
  }

  remember(note) {
    this.log.push(note);
    if (this.log.length > LOG_SIZE) this.log.splice(0, this.log.length - LOG_SIZE);
  }

  // bars of the loop with the rows' newest sounds, rendered offline at the model's rate: Float32Array.
  async render(bars, settings = this.settings) {
    const { bpm, swing, accent_db } = settings;
    const rate = this.model.sample_rate;
    const offline = new OfflineAudioContext(1, loopSamples(bars, bpm, rate), rate);
    for (let bar = 0; bar < bars; bar++) {
      for (const row of this.rows) {
        const sound = row.pending || row.sound;
        row.steps.forEach((value, step) => {
          if (value !== OFF) hit(offline, offline.destination, sound.buffer, bar * 4 * 60 / bpm + stepSeconds(step, bpm, swing), stepLevel(value, accent_db));
        });
      }
    }
    return (await offline.startRendering()).getChannelData(0);
  }

  async bounce(name = "") {
    const { bpm, swing, accent_db, bars } = this.settings;
    this.say(`rendering ${bars} bar${bars > 1 ? "s" : ""}…`);
    const audio = await this.render(bars);
    const rows = this.rows.map((row) => ({ class: (row.pending || row.sound).class, steps: row.steps }));
    const reply = await this.page.call("/api/bounce", { bpm, swing, accent_db, bars, rows, name, audio: base64OfFloats(audio) });
    this.say(`bounced ${reply.seconds.toFixed(2)} s: ${reply.wav} and ${reply.midi} in ${reply.folder}`);
    return reply;
  }

  // A MIDI note-on (any channel) on a row's key plays that row's sound, at (velocity / 127) ** 2.
  pad(data) {
    const [status, key, velocity] = data;
    if ((status & 0xf0) !== 0x90 || !velocity) return null;
    const index = this.rows.findIndex((row) => this.model.keys[row.sound.class || this.model.no_class] === key);
    if (index < 0) return null;
    const row = this.rows[index];
    const level = Math.pow(velocity / 127, this.limits.velocity_exponent);
    this.context.resume();
    hit(this.context, this.output, row.sound.buffer, this.context.currentTime, level);
    const note = { pad: key, row: index, sound: row.sound.id, time: this.context.currentTime, level };
    this.remember(note);
    return note;
  }

  async connectMidi() {
    const show = (text) => { this.midi = text; this.element("seq-midi").textContent = text; };
    if (!navigator.requestMIDIAccess) return show("MIDI pads: this browser offers no Web MIDI; everything else works.");
    try {
      const wait = new Promise((_, reject) => setTimeout(() => reject(new Error("no answer")), MIDI_WAIT_MS));
      const access = await Promise.race([navigator.requestMIDIAccess(), wait]);
      const listen = () => {
        const inputs = [...access.inputs.values()];
        for (const input of inputs) input.onmidimessage = (event) => this.pad(event.data);
        show(inputs.length ? `MIDI pads: ${inputs.map((input) => escaped(input.name)).join(", ")}` : "MIDI pads: none connected");
      };
      access.onstatechange = listen;
      listen();
    } catch (error) { show(`MIDI pads: no MIDI access (${escaped(error.message)}); everything else works.`); }
  }

  save() {
    const keep = (withSounds) => JSON.stringify({
      model_dir: this.model.model_dir, sample_rate: this.model.sample_rate, settings: this.settings,
      rows: this.rows.map((row) => {
        const sound = row.pending || row.sound;
        return { steps: row.steps, class: sound.class, id: sound.id, wav: withSounds ? sound.wav : null };
      }) });
    try { localStorage.setItem(STORE_KEY, keep(true)); }
    catch (error) {  // full: the pattern is kept, the sounds are made again on the next visit
      try { localStorage.setItem(STORE_KEY, keep(false)); } catch (ignored) { /* no storage at all */ }
      this.say("the browser's storage is full: the pattern is kept, the row sounds will be new ones", true);
    }
  }

  async restore() {
    let saved = null;
    try { saved = JSON.parse(localStorage.getItem(STORE_KEY)); } catch (error) { return false; }
    if (!saved || saved.model_dir !== this.model.model_dir || saved.sample_rate !== this.model.sample_rate) return false;
    this.settings = { ...this.settings, ...saved.settings };
    for (const [index, row] of saved.rows.slice(0, this.limits.max_rows).entries()) {
      const known = row.class === "" || this.model.classes.includes(row.class);
      const sound = row.wav ? row : await this.page.call("/api/sound", { mode: "new", class: known ? row.class : "", seed: index });
      this.rows.push({ id: this.nextRowId++, sound: await this.decoded(sound), pending: null, steps: row.steps });
    }
    return this.rows.length > 0;
  }

  drawSettings() {
    for (const [name, value] of Object.entries(this.settings)) {
      this.element("seq-" + name).value = value;
      const shown = this.element(`seq-${name}-value`);
      if (shown) shown.textContent = name === "swing" ? `${value}%` : name === "accent_db" ? `${value} dB` : value;
    }
  }

  draw() {
    this.drawSettings();
    const cells = (row) => row.steps.map((value, step) =>
      `<button class="step${value === ON ? " on" : value === ACCENT ? " accent" : ""}${step % 4 === 0 ? " beat" : ""}" ` +
      `data-step="${step}" aria-label="step ${step + 1}: ${["off", "on", "accent"][value]}"></button>`).join("");
    this.element("seq-grid").innerHTML = this.rows.map((row) =>
      `<div class="seq-row" data-row="${row.id}"><label class="arm" title="the sounds made above go to this row">` +
      `<input type="checkbox" ${this.armed === row.id ? "checked" : ""}> ` +
      `${escaped(row.sound.class || this.model.no_class)} <span class="muted">${escaped(row.sound.id)}` +
      `${row.pending ? " → " + escaped(row.pending.id) + " next pass" : ""}</span></label>` +
      `<button class="new">New</button><span class="steps">${cells(row)}</span><button class="remove" aria-label="remove row">×</button></div>`).join("");
    for (const element of this.element("seq-grid").querySelectorAll(".seq-row")) {
      const row = this.rows.find((r) => r.id === Number(element.dataset.row));
      element.querySelector("input").addEventListener("change", (event) => { this.armed = event.target.checked ? row.id : null; this.draw(); });
      element.querySelector(".new").addEventListener("click", () => this.newSound(row));
      element.querySelector(".remove").addEventListener("click", () => this.removeRow(row));
      for (const cell of element.querySelectorAll(".step")) {
        cell.addEventListener("click", () => { row.steps[Number(cell.dataset.step)] = (row.steps[Number(cell.dataset.step)] + 1) % 3; this.save(); this.draw(); });
      }
    }
  }

  async newSound(row) {
    const request = { ...this.page.soundRequest(), mode: "new", class: row.sound.class, seed: Math.floor(Math.random() * 2 ** 31) };
    try { await this.replace(row, await this.page.call("/api/sound", request)); }
    catch (error) { this.say(error.message, true); }
  }

  removeRow(row) {
    if (this.rows.length === 1) return this.say("the last row stays", true);
    this.rows = this.rows.filter((r) => r !== row);
    if (this.armed === row.id) this.armed = null;
    this.save();
    this.draw();
  }

  showStep() {  // the step now heard, lit in every row
    const now = this.context.currentTime - (this.context.outputLatency || 0);
    while (this.heard.length > 1 && this.heard[1].time <= now) this.heard.shift();
    const step = this.playing && this.heard.length && this.heard[0].time <= now ? this.heard[0].step : -1;
    for (const cell of document.querySelectorAll(".step")) cell.classList.toggle("now", Number(cell.dataset.step) === step);
    if (this.playing) requestAnimationFrame(() => this.showStep());
  }
}

const sequencer = new Sequencer();
