/*
 * The pre-call test on the reference page: docs/video.md "Pre-call test" by example.
 *
 *   1. POST /api/v1/video/precall (Authorization: Bearer <access>) → {test, token, offer_url,
 *      ice_servers, limits, seconds}
 *   2. getUserMedia within the limits; an RTCPeerConnection with the camera, the microphone
 *      and a data channel ("precall"); wait for ICE gathering to complete (no trickle here).
 *   3. POST offer_url {token, sdp} → {sdp} (the echo peer's answer). 503 media_worker_busy:
 *      every slot is taken, retry after Retry-After seconds (the same token works).
 *   4. The echo comes back on the same connection: you see and hear yourself. On the data
 *      channel: answer each `ping` with a `pong` (same seq); `stats` every second; `report`
 *      (verdict, advice, metrics) at the end, then the echo peer closes.
 *
 * Tests read window.__precall and document.body.dataset.precall
 * (idle | starting | running | done | busy | refused | failed).
 */
"use strict";

(() => {
  const TOKEN_STORAGE_KEY = "telehealth.access_token";
  const GATHERING_WAIT_MS = 5000;
  const $ = (id) => document.getElementById(id);

  const test = { state: "idle", pc: null, stream: null, channel: null, stats: [], report: null, rtts: [] };
  window.__precall = test;

  const VERDICT_TEXT = {
    good: "Good: your camera, microphone and connection are ready for the session.",
    fair: "Fair: the session should work, with some trouble. See the advice below.",
    poor: "Poor: the session may not work well. See the advice below.",
  };

  function setState(state) {
    test.state = state;
    document.body.dataset.precall = state;
    $("precall-start").disabled = state === "starting" || state === "running";
  }

  function status(text) {
    $("precall-status").textContent = text;
  }

  function accessToken() {
    const typed = $("token") ? $("token").value.trim() : "";
    return typed || sessionStorage.getItem(TOKEN_STORAGE_KEY) || "";
  }

  function problemText(status, problem) {
    const code = problem && problem.code;
    if (status === 401) return "Sign in first: paste your access token above.";
    if (code === "precall_in_progress") return "A test is already running for you. Wait for it to end.";
    if (code === "mfa_required") return "Sign in with your second factor to run the test.";
    return (problem && problem.detail) || `The test could not start (${status}).`;
  }

  async function postJson(url, body, bearer) {
    const headers = { "Content-Type": "application/json", Accept: "application/json" };
    if (bearer) headers.Authorization = `Bearer ${bearer}`;
    const response = await fetch(url, { method: "POST", headers, body: JSON.stringify(body) });
    let data = null;
    try { data = await response.json(); } catch (e) { data = null; }
    return { status: response.status, data, retryAfter: response.headers.get("Retry-After") };
  }

  function gatheringComplete(pc) {
    if (pc.iceGatheringState === "complete") return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => { if (pc.iceGatheringState === "complete") resolve(); };
      pc.addEventListener("icegatheringstatechange", done);
      setTimeout(resolve, GATHERING_WAIT_MS); // send the candidates gathered so far
    });
  }

  function send(message) {
    if (test.channel && test.channel.readyState === "open") test.channel.send(JSON.stringify(message));
  }

  function figure(label, value) {
    const dt = document.createElement("dt");
    dt.textContent = label;
    const dd = document.createElement("dd");
    dd.textContent = value;
    $("precall-figures").append(dt, dd);
  }

  const show = (value, unit) => (value === null || value === undefined ? "not measured" : `${value} ${unit}`);

  function showReport(report) {
    const m = report.metrics;
    const verdict = $("precall-verdict");
    verdict.textContent = VERDICT_TEXT[report.verdict] || report.verdict;
    verdict.className = `verdict-${report.verdict}`;
    verdict.hidden = false;
    const advice = $("precall-advice");
    advice.replaceChildren(...report.advice.map((a) => {
      const li = document.createElement("li");
      li.textContent = a.text;
      li.dataset.code = a.code;
      return li;
    }));
    $("precall-figures").replaceChildren();
    figure("Round trip", show(m.rtt_ms, "ms"));
    figure("Packets lost (sending / receiving)", `${show(m.upstream.loss_pct, "%")} / ${show(m.downstream.loss_pct, "%")}`);
    figure("Jitter (sending / receiving)", `${show(m.upstream.jitter_ms, "ms")} / ${show(m.downstream.jitter_ms, "ms")}`);
    figure("Bitrate (sending / receiving)", `${show(m.upstream.kbps, "kbit/s")} / ${show(m.downstream.kbps, "kbit/s")}`);
    figure("Your video as it arrived", m.video_width ? `${m.video_width}×${m.video_height}, ${m.video_fps} frames/s` : "none");
    figure("Path", m.path === "relay" ? "through a relay" : m.path === "direct" ? "direct" : "unknown");
    $("precall-figures").hidden = false;
  }

  function onMessage(event) {
    let message;
    try { message = JSON.parse(event.data); } catch (e) { return; }
    if (message.type === "ping") {
      send({ type: "pong", seq: message.seq });
    } else if (message.type === "stats") {
      test.stats.push(message);
      const m = message.metrics;
      status(`Testing… ${Math.round(message.elapsed)} s. Round trip ${show(m.rtt_ms, "ms")}.`);
    } else if (message.type === "report") {
      test.report = message;
      showReport(message);
      status("Test finished.");
      finish("done");
    }
  }

  function finish(state) {
    if (test.pc) test.pc.close();
    if (test.stream) test.stream.getTracks().forEach((t) => t.stop());
    test.pc = null;
    test.stream = null;
    setState(state);
  }

  async function run() {
    setState("starting");
    $("precall-verdict").hidden = true;
    $("precall-figures").hidden = true;
    $("precall-advice").replaceChildren();
    test.stats = [];
    test.report = null;
    status("Starting the test…");
    const started = await postJson("/api/v1/video/precall", {}, accessToken());
    if (started.status !== 200) {
      status(problemText(started.status, started.data));
      return finish("refused");
    }
    const { token, offer_url: offerUrl, ice_servers: iceServers, limits } = started.data;
    try {
      test.stream = await navigator.mediaDevices.getUserMedia({
        audio: true,
        video: { width: { ideal: limits.width }, height: { ideal: limits.height }, frameRate: { ideal: limits.fps, max: limits.fps } },
      });
    } catch (error) {
      status("The browser may not use your camera or microphone. Allow them in the address bar, then try again.");
      return finish("failed");
    }
    const pc = new RTCPeerConnection({ iceServers });
    test.pc = pc;
    test.stream.getTracks().forEach((track) => pc.addTrack(track, test.stream));
    test.channel = pc.createDataChannel("precall");
    test.channel.onmessage = onMessage;
    pc.ontrack = (event) => {
      const video = $("precall-video");
      video.srcObject = event.streams[0] || new MediaStream([event.track]);
      video.hidden = false;
    };
    await pc.setLocalDescription(await pc.createOffer());
    await gatheringComplete(pc);
    const answered = await postJson(offerUrl, { token, sdp: pc.localDescription.sdp });
    if (answered.status === 503) {
      const seconds = Number(answered.retryAfter) || (answered.data && answered.data.retry_after) || 30;
      status(`The test service is busy. Try again in ${seconds} seconds.`);
      return finish("busy");
    }
    if (answered.status !== 200) {
      status(problemText(answered.status, answered.data));
      return finish("refused");
    }
    await pc.setRemoteDescription({ type: "answer", sdp: answered.data.sdp });
    setState("running");
    status("Connecting… you should see and hear yourself in a moment (use headphones).");
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === "failed" && test.state === "running") {
        status("Your device could not connect to the test. A firewall or VPN may be blocking video calls.");
        finish("failed");
      }
    };
  }

  document.addEventListener("DOMContentLoaded", () => {
    setState("idle");
    $("precall-start").addEventListener("click", () => {
      run().catch(() => {
        status("The test failed. Reload the page and try again.");
        finish("failed");
      });
    });
  });
})();
