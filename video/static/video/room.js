/*
 * The reference video page: docs/video.md by example.
 *
 *   1. REST join:  POST /api/v1/video/rooms/{booking_id}/join  (Authorization: Bearer <access>)
 *                  → {room, token, ws_url, ice_servers, role, mode, window, ...}
 *   2. WebSocket:  open ws_url (no token in the URL), send `hello` with the room token first.
 *   3. Waiting:    a client waits (`waiting` tells it the therapist's status) until `admitted`;
 *                  the therapist sees `waiting-list` and sends `admit` / `deny`.
 *   4. Call:       `peer-joined` opens negotiation round N; the server names the offerer.
 *                  offer → answer, both sides trickle `candidate`s, all tagged with the round.
 *   5. In call:    `connection` (attendance: the page's peer connection connected, or not),
 *                  `media` (mute / camera), `mode` (audio only), `leave`, `end`; the therapist's
 *                  `share` (started / stopped, with the screen's mid) and a new offer of the
 *                  same round that adds or stops the shared screen.
 *   6. Reconnect:  a dropped socket → fresh room token from the REST join, then `hello` with the
 *                  `resume` token from `joined`: the place in the call is kept.
 *
 * The access token comes from the input box, this tab's sessionStorage
 * ("telehealth.access_token") or the URL fragment (#token=...; a fragment is never sent to the
 * server). Never from the query string: URLs end up in logs.
 */
"use strict";

(() => {
  const PROTOCOL_VERSION = 1;
  const TOKEN_STORAGE_KEY = "telehealth.access_token"; // sessionStorage (this tab only)
  const JURISDICTION_KEY = "telehealth.video.jurisdiction"; // localStorage (a preference)
  const RECONNECT_DELAYS_MS = [500, 1000, 2000, 4000, 8000, 8000, 8000, 8000, 8000];

  const $ = (id) => document.getElementById(id);
  const app = $("app");
  const bookingId = app.dataset.bookingId;

  // Everything the page knows about the call. Tests may read it (window.__videoCall).
  const call = {
    state: "idle", // idle | joining | waiting | admitting | in-call | reconnecting | ended | refused
    accessToken: "",
    join: null, // the REST join's answer
    socket: null,
    participant: null,
    role: null,
    resume: null, // resume token from `joined`
    round: 0, // the current negotiation round
    offerer: false,
    peer: null, // {participant, role}
    pc: null,
    reportedPc: null, // the peer connection last reported `connection` connected
    pendingRemoteCandidates: [], // received before the remote description was set
    pendingLocalCandidates: [], // gathered before our offer/answer was sent
    localDescriptionSent: false,
    localStream: null,
    audioOnly: false,
    share: null, // (therapist) the screen we share: {stream, track}
    shareMid: null, // (the other side) the mid of the therapist's shared screen in this round
    leaving: false, // the user hung up: a closing socket is expected
    terminal: false, // refused or ended: never reconnect
    reconnectAttempt: 0,
  };
  window.__videoCall = call;

  // ------------------------------------------------------------------------------- messages --

  const THERAPIST_STATUS = {
    not_arrived: "Your therapist has not arrived yet.",
    in_another_session: "Your therapist is finishing another session and will be with you soon.",
    ready: "Your therapist is here and will let you in shortly.",
  };

  // Every REST refusal of the join (docs/video.md "Join"), by problem `code`.
  function joinRefusalText(status, problem) {
    const code = problem && problem.code;
    switch (code) {
      case "booking_not_found":
        return "We could not find this appointment for your account. Check the link, and that you signed in with the account that booked it.";
      case "booking_not_confirmed":
        return "This appointment is not confirmed (it may be pending payment or cancelled), so its video room is not available.";
      case "room_not_open": {
        const opens = problem.opens_at ? new Date(problem.opens_at) : null;
        const when = opens && !Number.isNaN(opens.getTime())
          ? opens.toLocaleString(undefined, { dateStyle: "full", timeStyle: "short" })
          : "a few minutes before the session";
        return `The video room is not open yet. It opens at ${when} (your local time). Please come back then.`;
      }
      case "room_closed":
        return "This session's video room has closed. If you still need to talk, book a new session.";
      case "not_licensed_in_jurisdiction":
        return "Your therapist is not licensed to see you where you are now. Check the location you entered; if it is right, contact your therapist to arrange another way to meet.";
      case "no_video":
        return "This appointment is in person: it has no video call.";
      case "mfa_required":
        return "Your account needs a second sign-in factor for this. Sign in again with your authenticator code and paste the new access token.";
      default:
        break;
    }
    if (status === 401) {
      return "Your sign-in is missing, not valid or has expired. Sign in again and paste a new access token.";
    }
    if (status === 403) {
      return "Your account is not allowed to join this video call.";
    }
    if (status === 429) {
      return "Too many attempts. Wait a minute and try again.";
    }
    if (status === 400 && problem && Array.isArray(problem.errors)) {
      if (problem.errors.some((e) => e.field === "jurisdiction")) {
        return "Enter where you are now (for example US-NY): your therapist must be licensed there.";
      }
    }
    const detail = problem && problem.detail ? ` (${problem.detail})` : "";
    return `The video room could not be opened${detail}. Please try again.`;
  }

  // Every close code of the signalling socket (docs/video.md "Close codes").
  const CLOSE_TEXT = {
    4400: "The call could not start: this page sent something the server did not understand. Reload the page.",
    4401: "Your access to this room is not valid or has expired. Sign in again and rejoin.",
    4403: "You cannot enter this room: the therapist did not let you in, or this link is for someone else.",
    4409: "This call was opened in another window or device, so this one was closed.",
    4410: "The session has ended.",
    4413: "A message was too large and the connection was closed. Reload the page to rejoin.",
    4429: "Too many messages were sent and the connection was closed. Reload the page to rejoin.",
  };
  const TERMINAL_CLOSE_CODES = new Set(Object.keys(CLOSE_TEXT).map(Number));

  const ENDED_TEXT = {
    ended_by_therapist: "Your therapist ended the session.",
    window_closed: "The session's time is over and the room has closed.",
  };

  // ------------------------------------------------------------------------------------ UI ---

  function setState(state) {
    call.state = state;
    document.body.dataset.state = state;
    const inRoom = ["waiting", "admitting", "in-call", "reconnecting"].includes(state);
    $("signin").hidden = inRoom || state === "joining" || state === "ended";
    $("waiting").hidden = !(state === "waiting" && call.role === "client");
    $("therapist").hidden = !(inRoom && call.role === "therapist");
    $("call").hidden = !(state === "in-call" || state === "admitting" || state === "reconnecting");
    $("hangup").hidden = !inRoom;
    $("share").hidden = call.role !== "therapist";
  }

  function showMessage(text) {
    const el = $("message");
    el.textContent = text;
    el.hidden = !text;
  }

  function showStatus(text) {
    $("status").textContent = text;
  }

  function refuse(text) {
    call.terminal = true;
    showMessage(text);
    setState("refused");
    cleanUpCall();
  }

  // ----------------------------------------------------------------------- token sources ---

  function tokenFromFragment() {
    // #token=... : read it, then drop it from the address bar and the history entry.
    const params = new URLSearchParams(location.hash.slice(1));
    const token = params.get("token");
    if (token) {
      history.replaceState(null, "", location.pathname);
    }
    return token || "";
  }

  function tokenFromSession() {
    try {
      return sessionStorage.getItem(TOKEN_STORAGE_KEY) || "";
    } catch (e) {
      return "";
    }
  }

  // The token's role, read (not verified: the server does that) to show the location field to
  // clients only.
  function roleOfToken(token) {
    try {
      const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      return JSON.parse(atob(payload)).role || null;
    } catch (e) {
      return null;
    }
  }

  function showJurisdictionFor(token) {
    $("jurisdiction-row").hidden = roleOfToken(token) === "therapist";
  }

  // ------------------------------------------------------------------ camera / microphone ---

  let meterTimer = null;
  let audioContext = null;
  let previewReady = Promise.resolve(); // the camera check under way: Join waits for it

  async function startPreview() {
    $("media-advice").hidden = true;
    stopLocalMedia();
    try {
      call.localStream = await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
    } catch (err) {
      call.localStream = null;
      showMediaAdvice(err);
      return;
    }
    $("local-video").srcObject = call.localStream;
    startMeter(call.localStream);
  }

  function showMediaAdvice(err) {
    const advice = $("media-advice");
    const name = err && err.name;
    if (name === "NotAllowedError" || name === "SecurityError") {
      advice.textContent = "The browser was not allowed to use your camera or microphone. Click the camera icon in the address bar (or your browser's site settings), allow both for this site, then press \"Check camera and microphone again\". You can still join; the other side will not see or hear you.";
    } else if (name === "NotFoundError" || name === "OverconstrainedError") {
      advice.textContent = "No camera or microphone was found. Plug one in, then check again. You can still join to see and hear the other side.";
    } else if (name === "NotReadableError") {
      advice.textContent = "Your camera or microphone is in use by another application. Close it, then check again.";
    } else {
      advice.textContent = `The camera and microphone could not be started (${name || err}).`;
    }
    advice.hidden = false;
  }

  function startMeter(stream) {
    if (!stream.getAudioTracks().length || !window.AudioContext) {
      return;
    }
    audioContext = new AudioContext();
    const analyser = audioContext.createAnalyser();
    analyser.fftSize = 512;
    audioContext.createMediaStreamSource(stream).connect(analyser);
    const samples = new Float32Array(analyser.fftSize);
    meterTimer = setInterval(() => {
      analyser.getFloatTimeDomainData(samples);
      let sum = 0;
      for (const s of samples) {
        sum += s * s;
      }
      $("mic-level").value = Math.min(1, Math.sqrt(sum / samples.length) * 4);
    }, 100);
  }

  function stopLocalMedia() {
    clearInterval(meterTimer);
    meterTimer = null;
    if (audioContext) {
      audioContext.close();
      audioContext = null;
    }
    if (call.localStream) {
      call.localStream.getTracks().forEach((t) => t.stop());
      call.localStream = null;
    }
  }

  // ---------------------------------------------------------------------------- REST join ---

  // POST .../join. Returns the answer, or null after showing the refusal.
  async function restJoin() {
    const body = {};
    const jurisdiction = $("jurisdiction").value.trim();
    if (jurisdiction && roleOfToken(call.accessToken) !== "therapist") {
      body.jurisdiction = jurisdiction;
    }
    let res;
    try {
      res = await fetch(`/api/v1/video/rooms/${encodeURIComponent(bookingId)}/join`, {
        method: "POST",
        headers: {
          Authorization: `Bearer ${call.accessToken}`,
          "Content-Type": "application/json",
          Accept: "application/json, application/problem+json",
        },
        body: JSON.stringify(body),
        cache: "no-store",
        credentials: "omit",
      });
    } catch (err) {
      return { networkError: err };
    }
    if (res.ok) {
      return { answer: await res.json() };
    }
    let problem = null;
    try {
      problem = await res.json();
    } catch (e) {
      problem = null;
    }
    return { refusal: joinRefusalText(res.status, problem), status: res.status, problem };
  }

  async function onJoinClicked() {
    showMessage("");
    call.accessToken = $("token").value.trim();
    if (!call.accessToken) {
      showMessage("Paste your access token first (sign in to get one).");
      return;
    }
    const jurisdiction = $("jurisdiction").value.trim();
    if (jurisdiction) {
      localStorage.setItem(JURISDICTION_KEY, jurisdiction);
    }
    call.terminal = false;
    call.leaving = false;
    if (audioContext) audioContext.resume();
    setState("joining");
    showStatus("Opening the room…");
    await previewReady; // join with the camera and microphone if they can be had
    const result = await restJoin();
    if (result.networkError) {
      showMessage("The server could not be reached. Check your connection and try again.");
      setState("idle");
      return;
    }
    if (result.refusal) {
      showStatus("");
      refuse(result.refusal);
      return;
    }
    call.join = result.answer;
    call.role = result.answer.role;
    openSocket();
  }

  // --------------------------------------------------------------------------- signalling ---

  function send(message) {
    if (call.socket && call.socket.readyState === WebSocket.OPEN) {
      call.socket.send(JSON.stringify({ v: PROTOCOL_VERSION, ...message }));
    }
  }

  function socketUrl(wsUrl) {
    const url = new URL(wsUrl, location.href);
    if (url.protocol === "http:") url.protocol = "ws:";
    if (url.protocol === "https:") url.protocol = "wss:";
    return url.href;
  }

  let inbox = Promise.resolve();

  function openSocket() {
    const socket = new WebSocket(socketUrl(call.join.ws_url));
    call.socket = socket;
    socket.addEventListener("open", () => {
      // hello: the first message, with the room token (and the resume token after a drop).
      // ice_restart: in a restart round this page restarts ICE on its peer connection
      // (restartIce()) when the server says both sides can (peer-joined's ice_restart).
      const hello = { type: "hello", token: call.join.token, ice_restart: true };
      if (call.resume) {
        hello.resume = call.resume;
      }
      send(hello);
    });
    socket.addEventListener("message", (event) => {
      let message;
      try {
        message = JSON.parse(event.data);
      } catch (e) {
        return;
      }
      // One message at a time, in order: a candidate waits for the offer before it.
      inbox = inbox.then(() => handle(message))
        .catch((err) => console.error("video: handling", message.type, err));
    });
    socket.addEventListener("close", (event) => {
      if (socket === call.socket) {
        onSocketClosed(event);
      }
    });
  }

  const handlers = {
    // joined: hello accepted. Keep the resume token; show the waiting room or the call.
    joined(m) {
      call.participant = m.participant;
      call.role = m.role;
      call.resume = m.resume;
      call.reconnectAttempt = 0;
      call.reportedPc = null; // a new socket: the server closed what the last one held
      call.audioOnly = m.mode === "audio";
      showMessage("");
      if (m.role === "therapist") {
        setState("in-call");
        showStatus("You are in the room. Admit your client when they arrive.");
      } else if (m.state === "waiting") {
        setState("waiting");
        showStatus("");
      } else {
        setState("in-call");
        showStatus("Connecting…");
      }
    },

    // waiting: (to a waiting client) the therapist's status and whether notes are allowed.
    waiting(m) {
      $("therapist-status").textContent = THERAPIST_STATUS[m.therapist] || "";
      $("note-box").hidden = !m.notes_allowed;
    },

    // waiting-list: (to the therapist) who is waiting, each with Admit / Deny.
    "waiting-list"(m) {
      renderWaitingList(m.waiting || []);
    },

    // note: (to the therapist) a waiting client's note.
    note(m) {
      const item = document.querySelector(`#waiting-list li[data-participant="${CSS.escape(m.participant)}"]`);
      if (item) {
        let note = item.querySelector(".note");
        if (!note) {
          note = document.createElement("span");
          note.className = "note";
          item.appendChild(note);
        }
        note.textContent = m.text; // text, never HTML
      }
    },

    // admitted: the therapist let us in; peer-joined follows.
    admitted() {
      setState("in-call");
      showStatus("Your therapist let you in. Connecting…");
    },

    // denied: the therapist did not let us in; close 4403 follows.
    denied() {
      refuse("Your therapist did not let you into this session.");
    },

    // peer-joined: both are in the call; negotiate round `round`, we offer if `offerer`.
    // `ice_restart`: the round replaces a failed one and both sides restart ICE on the peer
    // connection they have with each other (the same DTLS association). Otherwise a new peer
    // connection: an aiortc peer makes a new one each round (a new DTLS certificate), and
    // after a reconnect the other side has closed its own.
    async "peer-joined"(m) {
      call.peer = m.peer;
      call.round = m.round;
      call.offerer = m.offerer;
      setState("in-call");
      showStatus(m.offerer ? "Calling…" : "Connecting…");
      const pc = call.pc;
      if (m.ice_restart && pc && pc.peer === m.peer.participant && pc.signalingState !== "closed") {
        restartRound(pc, m.round);
        if (m.offerer) pc.restartIce(); // the next offer has new ICE credentials
      } else {
        newPeerConnection(m.round, m.peer.participant);
      }
      if (m.offerer) {
        await sendOffer(call.pc);
      }
    },

    // offer: (we answer this round) set it, answer it.
    async offer(m) {
      if (m.round < call.round) {
        return; // an older round's offer
      }
      call.round = m.round;
      if (!call.pc || call.pc.round !== m.round) {
        newPeerConnection(m.round, m.from);
      }
      const pc = call.pc;
      await pc.setRemoteDescription({ type: "offer", sdp: m.sdp });
      await flushRemoteCandidates(pc);
      await pc.setLocalDescription(await pc.createAnswer());
      // answer: the whole SDP, tagged with the round.
      send({ type: "answer", round: m.round, sdp: pc.localDescription.sdp });
      localDescriptionSent(pc);
    },

    // answer: (we offered) set it.
    async answer(m) {
      const pc = call.pc;
      if (!pc || pc.round !== m.round || pc.signalingState !== "have-local-offer") {
        return;
      }
      await pc.setRemoteDescription({ type: "answer", sdp: m.sdp });
      await flushRemoteCandidates(pc);
      pc.offering = false;
      if (pc.renegotiate) {
        // A change (screen share) came while our last offer was out: offer it now.
        pc.renegotiate = false;
        await sendOffer(pc);
      }
    },

    // candidate: one trickled ICE candidate of the other side, or null: end of candidates.
    async candidate(m) {
      const pc = call.pc;
      if (!pc || pc.round !== m.round) {
        return;
      }
      if (!pc.remoteDescription) {
        call.pendingRemoteCandidates.push(m.candidate);
        return;
      }
      await addRemoteCandidate(pc, m.candidate);
    },

    // share: (from the therapist) the video of `mid` in this round is their shared screen,
    // or no longer. It comes before the offer that adds the video: the track event shows it.
    share(m) {
      const pc = call.pc;
      if (!pc || pc.round !== m.round) {
        return;
      }
      if (m.state === "started") {
        call.shareMid = m.mid;
        const transceiver = pc.getTransceivers().find((t) => t.mid === m.mid);
        if (transceiver && transceiver.receiver.track) showShared(transceiver.receiver.track);
      } else if (call.shareMid === m.mid) {
        call.shareMid = null;
        hideShared();
      }
    },

    // peer-media: the other side muted or turned its camera off.
    "peer-media"(m) {
      const parts = [];
      if (!m.audio) parts.push("is muted");
      if (!m.video) parts.push("has turned the camera off");
      $("peer-media").textContent = parts.length ? `The other person ${parts.join(" and ")}.` : "";
    },

    // mode: the call dropped to audio only (or back to video).
    async mode(m) {
      await setAudioOnly(m.mode === "audio", false);
    },

    // peer-left: gone for good (`left`) or for now (`disconnected`: may come back).
    "peer-left"(m) {
      closePeerConnection();
      $("remote-video").srcObject = null;
      showStatus(m.reason === "disconnected"
        ? "The other person lost their connection. Waiting for them to come back…"
        : "The other person left the call.");
    },

    // ended: the session is over for everyone; close 4410 follows.
    ended(m) {
      call.terminal = true;
      showMessage(ENDED_TEXT[m.reason] || "The session has ended.");
      setState("ended");
      cleanUpCall();
    },

    // error: a message of ours was refused; nothing was relayed.
    error(m) {
      console.warn("video: refused", m.ref, m.code, m.detail);
      if (m.code === "rate_limited") {
        showStatus("Slow down: too many messages.");
      }
    },
  };

  async function handle(message) {
    const handler = handlers[message.type];
    if (handler) {
      await handler(message);
    }
  }

  function renderWaitingList(waiting) {
    const list = $("waiting-list");
    const notes = new Map();
    list.querySelectorAll("li").forEach((li) => {
      const note = li.querySelector(".note");
      if (note) notes.set(li.dataset.participant, note.textContent);
    });
    list.replaceChildren();
    for (const person of waiting) {
      const li = document.createElement("li");
      li.dataset.participant = person.participant;
      const since = person.since ? new Date(person.since).toLocaleTimeString() : "";
      const label = document.createElement("span");
      label.textContent = `${person.display_name || person.role} (${person.role}) waiting since ${since} `;
      const admit = document.createElement("button");
      admit.type = "button";
      admit.className = "admit";
      admit.textContent = "Admit";
      // admit: let this participant into the call.
      admit.addEventListener("click", () => send({ type: "admit", participant: person.participant }));
      const deny = document.createElement("button");
      deny.type = "button";
      deny.className = "deny";
      deny.textContent = "Deny";
      // deny: refuse them (their socket is closed with 4403).
      deny.addEventListener("click", () => send({ type: "deny", participant: person.participant }));
      li.append(label, admit, deny);
      if (notes.has(person.participant)) {
        const note = document.createElement("span");
        note.className = "note";
        note.textContent = notes.get(person.participant);
        li.appendChild(note);
      }
      list.appendChild(li);
    }
    $("waiting-empty").hidden = waiting.length > 0;
  }

  // ------------------------------------------------------------------------ peer connection ---

  // The page's RTCPeerConnection for one round with `peer`, with the ICE servers from the join.
  function newPeerConnection(round, peer) {
    closePeerConnection();
    const pc = new RTCPeerConnection({ iceServers: call.join.ice_servers || [] });
    pc.peer = peer;
    call.pc = pc;
    restartRound(pc, round);

    const stream = call.localStream;
    const audio = stream && stream.getAudioTracks()[0];
    const video = stream && !call.audioOnly && stream.getVideoTracks()[0];
    if (audio) pc.addTrack(audio, stream);
    else pc.addTransceiver("audio", { direction: "recvonly" });
    if (video) pc.addTrack(video, stream);
    else pc.addTransceiver("video", { direction: "recvonly" });
    if (call.share) attachShare(pc); // a share running when a new round starts goes on

    // candidate: trickle each of ours (toJSON: candidate, sdpMid, sdpMLineIndex,
    // usernameFragment), then null when gathering is done. Held until our SDP is sent.
    pc.addEventListener("icecandidate", (event) => {
      const candidate = event.candidate ? event.candidate.toJSON() : null;
      if (call.pc !== pc) return;
      if (!call.localDescriptionSent) {
        call.pendingLocalCandidates.push(candidate);
      } else {
        send({ type: "candidate", round: pc.round, candidate });
      }
    });
    pc.addEventListener("track", (event) => {
      // The call's camera and microphone are the first audio and video sections; another
      // video is the therapist's shared screen, shown once `share` names its mid.
      const first = pc.getTransceivers().find((t) => t.receiver.track.kind === event.track.kind);
      if (first !== event.transceiver) {
        if (event.transceiver.mid === call.shareMid) showShared(event.track);
        return;
      }
      const remote = $("remote-video");
      remote.srcObject = event.streams[0] || new MediaStream([event.track]);
    });
    pc.addEventListener("connectionstatechange", () => {
      reportConnection(pc);
      if (call.pc !== pc) return;
      if (pc.connectionState === "connected") {
        showStatus("Connected. The call is end-to-end encrypted.");
        if (!pc.statsTimer) {
          pc.statsTimer = setInterval(() => reportStats(pc).catch(() => {}), STATS_INTERVAL_MS);
        }
      } else if (pc.connectionState === "failed") {
        // restart: ask the server for a new negotiation round.
        showStatus("The connection failed. Trying again…");
        send({ type: "restart", round: pc.round });
      }
    });
    return pc;
  }

  // The peer connection negotiates round `round` from the start: its candidates wait for
  // the round's offer or answer, an offer of an older round is forgotten (its answer will not
  // come), and a running share is announced again with the round's offer.
  function restartRound(pc, round) {
    pc.round = round;
    pc.offering = false;
    pc.renegotiate = false;
    pc.shareAnnounced = null;
    call.pendingRemoteCandidates = [];
    call.pendingLocalCandidates = [];
    call.localDescriptionSent = false;
  }

  // connection: attendance. The server records, in its own time, when this page's media were
  // connected: tell it when the round's peer connection connects and when it stops being so.
  function reportConnection(pc, closing = false) {
    const connected = !closing && call.pc === pc && pc.connectionState === "connected";
    if (connected && call.reportedPc !== pc) {
      call.reportedPc = pc;
      send({ type: "connection", state: "connected" });
    } else if (!connected && call.reportedPc === pc) {
      call.reportedPc = null;
      send({ type: "connection", state: "disconnected" });
    }
  }

  function localDescriptionSent(pc) {
    if (call.pc !== pc) return;
    call.localDescriptionSent = true;
    for (const candidate of call.pendingLocalCandidates) {
      send({ type: "candidate", round: pc.round, candidate });
    }
    call.pendingLocalCandidates = [];
  }

  async function addRemoteCandidate(pc, candidate) {
    try {
      // null: the other side has no more candidates.
      await pc.addIceCandidate(candidate === null ? undefined : candidate);
    } catch (err) {
      console.warn("video: candidate not added", err);
    }
  }

  async function flushRemoteCandidates(pc) {
    const pending = call.pendingRemoteCandidates;
    call.pendingRemoteCandidates = [];
    for (const candidate of pending) {
      await addRemoteCandidate(pc, candidate);
    }
  }

  function closePeerConnection() {
    if (call.pc) {
      reportConnection(call.pc, true); // close() fires no connectionstatechange
      clearInterval(call.pc.statsTimer);
      call.pc.close();
      call.pc = null;
    }
    call.shareMid = null; // a share is announced again in the next round
    hideShared();
  }

  // offer: (therapist) the round's offer, or a renegotiation of the same round when the
  // screen share starts or stops; one offer out at a time (the next waits for the answer).
  async function sendOffer(pc) {
    if (pc.offering) {
      pc.renegotiate = true;
      return;
    }
    pc.offering = true;
    await pc.setLocalDescription(await pc.createOffer());
    if (call.pc !== pc) return;
    announceShare(pc);
    // offer: the whole SDP; our candidates follow by trickle.
    send({ type: "offer", round: pc.round, sdp: pc.localDescription.sdp });
    localDescriptionSent(pc);
  }

  // ------------------------------------------------------------------------ screen sharing ---

  // share: (therapist) tell the other side which video is our screen, before the offer that
  // adds it (the mid is known once the offer is set), and when it stops.
  function announceShare(pc) {
    const transceiver = pc.shareTransceiver;
    if (!transceiver || !transceiver.mid) return;
    const state = call.share ? "started" : "stopped";
    if (pc.shareAnnounced === state || (state === "stopped" && !pc.shareAnnounced)) return;
    pc.shareAnnounced = state;
    send({ type: "share", round: pc.round, state, mid: transceiver.mid });
  }

  // The screen as a send-only video of this connection: a new transceiver the first time,
  // the same one (and its mid) when sharing again.
  function attachShare(pc) {
    const { stream, track } = call.share;
    const transceiver = pc.shareTransceiver;
    if (transceiver) {
      transceiver.sender.replaceTrack(track);
      transceiver.sender.setStreams(stream);
      transceiver.direction = "sendonly";
    } else {
      pc.shareTransceiver = pc.addTransceiver(track, { direction: "sendonly", streams: [stream] });
    }
  }

  async function startShare() {
    if (call.share || call.choosingScreen) return; // one picker at a time
    call.choosingScreen = true;
    let stream;
    try {
      stream = await navigator.mediaDevices.getDisplayMedia({ video: true, audio: false });
    } catch (err) {
      showStatus(err && err.name === "NotAllowedError"
        ? "Screen sharing was cancelled or is not allowed in this browser."
        : `Your screen could not be shared (${(err && err.name) || err}).`);
      return;
    } finally {
      call.choosingScreen = false;
    }
    if (call.terminal) {
      stream.getTracks().forEach((t) => t.stop()); // the call ended while the picker was open
      return;
    }
    const track = stream.getVideoTracks()[0];
    track.contentHint = "detail"; // text stays sharp rather than smooth
    // The browser's own "Stop sharing" ends the track.
    track.addEventListener("ended", () => {
      if (call.share && call.share.track === track) stopShare();
    });
    call.share = { stream, track };
    showShareButton();
    if (call.pc) {
      attachShare(call.pc);
      await sendOffer(call.pc);
    }
  }

  // Stop sending the screen: no track, the transceiver inactive (kept for the next share),
  // announced `stopped` with the renegotiation.
  async function stopShare() {
    const share = call.share;
    if (!share) return;
    call.share = null;
    share.track.stop();
    showShareButton();
    const pc = call.pc;
    if (pc && pc.shareTransceiver) {
      await pc.shareTransceiver.sender.replaceTrack(null);
      pc.shareTransceiver.direction = "inactive";
      await sendOffer(pc);
    }
  }

  function showShareButton() {
    $("share").setAttribute("aria-pressed", String(!!call.share));
    $("share").textContent = call.share ? "Stop sharing" : "Share screen";
  }

  function showShared(track) {
    $("shared-screen").srcObject = new MediaStream([track]);
    $("shared").hidden = false;
  }

  function hideShared() {
    $("shared-screen").srcObject = null;
    $("shared").hidden = true;
  }

  // -------------------------------------------------------------------------- call quality ---

  // stats: every STATS_INTERVAL_MS in a call, what this peer connection measured over the last
  // period, for support (round-trip time, loss, jitter, bitrates, the video size received,
  // relayed or direct). Numbers and one boolean: never an address.
  const STATS_INTERVAL_MS = 10000;

  async function reportStats(pc) {
    if (!pc || call.pc !== pc || pc.connectionState !== "connected") return null;
    const report = await pc.getStats();
    let pairId = null;
    report.forEach((s) => {
      if (s.type === "transport" && s.selectedCandidatePairId) pairId = s.selectedCandidatePairId;
    });
    let rtt = null, relay = false, lost = 0, received = 0, jitter = null;
    let width = null, height = null, bytesIn = 0, bytesOut = 0;
    report.forEach((s) => {
      if (s.type === "candidate-pair" && s.id === pairId) {
        if (s.currentRoundTripTime !== undefined) rtt = Math.min(60000, s.currentRoundTripTime * 1000);
        const local = report.get(s.localCandidateId);
        const remote = report.get(s.remoteCandidateId);
        relay = [local, remote].some((c) => c && c.candidateType === "relay");
      } else if (s.type === "inbound-rtp") {
        lost += Math.max(0, s.packetsLost || 0);
        received += s.packetsReceived || 0;
        bytesIn += s.bytesReceived || 0;
        if (s.kind === "audio" && s.jitter !== undefined) jitter = Math.min(60000, s.jitter * 1000);
        if (s.kind === "video" && s.frameWidth && s.mid !== call.shareMid) {
          width = s.frameWidth;
          height = s.frameHeight;
        }
      } else if (s.type === "outbound-rtp") {
        bytesOut += s.bytesSent || 0;
      }
    });
    const now = performance.now();
    const last = pc.lastStats;
    pc.lastStats = { now, bytesIn, bytesOut };
    // bits per millisecond are kbit/s
    const rate = (bytes, before) => (last && now > last.now ? Math.max(0, ((bytes - before) * 8) / (now - last.now)) : null);
    const stats = {
      type: "stats",
      rtt_ms: rtt,
      loss: received + lost ? lost / (received + lost) : null,
      jitter_ms: jitter,
      bitrate_in_kbps: rate(bytesIn, last && last.bytesIn),
      bitrate_out_kbps: rate(bytesOut, last && last.bytesOut),
      width,
      height,
      relay,
    };
    send(stats);
    return stats;
  }
  call.reportStats = () => reportStats(call.pc); // for support consoles and the tests

  // ------------------------------------------------------------------------- call controls ---

  function sendMediaState() {
    const stream = call.localStream;
    const audio = !!stream && stream.getAudioTracks().some((t) => t.enabled && t.readyState === "live");
    const video = !!stream && !call.audioOnly
      && stream.getVideoTracks().some((t) => t.enabled && t.readyState === "live");
    // media: our mute / camera state, shown to the other side as peer-media.
    send({ type: "media", audio, video });
  }

  function toggleMute() {
    const tracks = call.localStream ? call.localStream.getAudioTracks() : [];
    const muted = !tracks.some((t) => t.enabled);
    tracks.forEach((t) => { t.enabled = muted; });
    $("mute").setAttribute("aria-pressed", String(!muted));
    $("mute").textContent = muted ? "Mute" : "Unmute";
    sendMediaState();
  }

  function toggleCamera() {
    const tracks = call.localStream ? call.localStream.getVideoTracks() : [];
    const off = !tracks.some((t) => t.enabled);
    tracks.forEach((t) => { t.enabled = off; });
    $("camera").setAttribute("aria-pressed", String(!off));
    $("camera").textContent = off ? "Camera off" : "Camera on";
    sendMediaState();
  }

  // Audio only: stop sending video (and stop the camera). `announce`: we chose it, so send
  // `mode`; when the other side chose it, we follow without echoing it back.
  async function setAudioOnly(audioOnly, announce) {
    if (call.audioOnly === audioOnly && !announce) return;
    call.audioOnly = audioOnly;
    const senders = call.pc ? cameraSenders(call.pc) : [];
    const sender = senders.find((s) => s.track && s.track.kind === "video");
    if (audioOnly) {
      if (call.localStream) {
        call.localStream.getVideoTracks().forEach((t) => { t.stop(); call.localStream.removeTrack(t); });
      }
      if (sender) await sender.replaceTrack(null);
    } else if (call.localStream) {
      try {
        const camera = await navigator.mediaDevices.getUserMedia({ video: true });
        const track = camera.getVideoTracks()[0];
        call.localStream.addTrack(track);
        const videoSender = senders.find((s) => !s.track || s.track.kind === "video");
        if (videoSender) await videoSender.replaceTrack(track);
      } catch (err) {
        showMediaAdvice(err);
      }
    }
    $("audio-only").setAttribute("aria-pressed", String(audioOnly));
    $("audio-only").textContent = audioOnly ? "Turn video back on" : "Audio only";
    if (announce) {
      // mode: drop the call to audio (or back to video).
      send({ type: "mode", mode: audioOnly ? "audio" : "video" });
    }
    sendMediaState();
  }

  // The call's own senders (camera, microphone), not the shared screen's.
  function cameraSenders(pc) {
    const screen = pc.shareTransceiver && pc.shareTransceiver.sender;
    return pc.getSenders().filter((s) => s !== screen);
  }

  // The screen is no longer shared (without renegotiating: the call is over).
  function dropShare() {
    if (call.share) call.share.track.stop();
    call.share = null;
    showShareButton();
  }

  function hangUp() {
    call.leaving = true;
    call.terminal = true;
    // leave: gone for good (the room token is spent). The server answers by closing the
    // socket; closing it ourselves at once could lose the leave, so only if it does not.
    send({ type: "leave" });
    const socket = call.socket;
    setTimeout(() => {
      if (socket && socket.readyState <= WebSocket.OPEN) socket.close(1000, "left");
    }, 3000);
    closePeerConnection();
    $("remote-video").srcObject = null;
    dropShare();
    stopLocalMedia(); // the camera light goes off
    showStatus("");
    showMessage("You left the call.");
    setState("ended");
  }

  function cleanUpCall() {
    closePeerConnection();
    dropShare();
    $("remote-video").srcObject = null;
    if (call.socket && call.socket.readyState <= WebSocket.OPEN) {
      call.socket.close(1000);
    }
  }

  // ---------------------------------------------------------------------------- reconnect ---

  function onSocketClosed(event) {
    if (call.leaving || call.terminal) {
      return;
    }
    if (TERMINAL_CLOSE_CODES.has(event.code)) {
      refuse(CLOSE_TEXT[event.code]);
      return;
    }
    if (!call.resume) {
      // Never got into the room: nothing to resume.
      refuse("The connection to the room was lost. Check your connection, then join again.");
      return;
    }
    reconnect();
  }

  // A dropped socket (network change, server restart): fresh room token from the REST join,
  // then hello with the resume token. The call's peer connection is rebuilt on peer-joined.
  async function reconnect() {
    setState("reconnecting");
    showStatus("Reconnecting…");
    const attempt = call.reconnectAttempt++;
    if (attempt >= RECONNECT_DELAYS_MS.length) {
      refuse("The connection to the room could not be restored. Check your connection, then join again.");
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, RECONNECT_DELAYS_MS[attempt]));
    if (call.terminal) return;
    const result = await restJoin();
    if (result.networkError || (result.status && result.status >= 500)) {
      reconnect();
      return;
    }
    if (result.refusal) {
      refuse(result.refusal);
      return;
    }
    call.join = result.answer;
    openSocket();
  }

  // ------------------------------------------------------------------------------- wiring ---

  function init() {
    const token = tokenFromFragment() || tokenFromSession();
    $("token").value = token;
    showJurisdictionFor(token);
    $("token").addEventListener("input", () => showJurisdictionFor($("token").value.trim()));
    $("jurisdiction").value = localStorage.getItem(JURISDICTION_KEY) || "";
    $("join").addEventListener("click", onJoinClicked);
    $("check-media").addEventListener("click", () => { previewReady = startPreview(); });
    $("mute").addEventListener("click", toggleMute);
    $("camera").addEventListener("click", toggleCamera);
    $("audio-only").addEventListener("click", () => setAudioOnly(!call.audioOnly, true));
    $("share").addEventListener("click", () => (call.share ? stopShare() : startShare()));
    $("hangup").addEventListener("click", hangUp);
    $("end").addEventListener("click", () => {
      // end: (therapist) end the session for everyone.
      send({ type: "end" });
    });
    $("allow-notes").addEventListener("change", (event) => {
      // notes: (therapist) allow or refuse waiting-room notes.
      send({ type: "notes", allow: event.target.checked });
    });
    $("send-note").addEventListener("click", () => {
      const text = $("note").value.trim();
      if (text) {
        // note: (waiting client) a short note to the therapist.
        send({ type: "note", text });
        $("note").value = "";
        showStatus("Your note was sent.");
      }
    });
    setState("idle");
    previewReady = startPreview();
  }

  init();
})();
