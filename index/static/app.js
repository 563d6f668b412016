// Newsflow search page: plain DOM, no build step, talks only to this origin's /v1 API.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);
  const POLL_MS = Math.max(500, Number(params.get("poll")) || 5000);
  const PAGE_SIZE = 10;
  const state = { token: null, request: null, known: null, busy: false, queued: false };

  function apiKey() { return localStorage.getItem("newsflow-api-key") || ""; }

  async function api(path, query) {
    const url = new URL(path, location.origin);
    for (const [k, v] of Object.entries(query || {})) {
      if (v !== "" && v !== null && v !== undefined) url.searchParams.set(k, v);
    }
    const headers = { Accept: "application/json" };
    if (apiKey()) headers["X-API-Key"] = apiKey();
    const response = await fetch(url, { headers });
    const body = await response.json().catch(() => ({}));
    if (response.status === 401 || response.status === 403) {
      $("auth").hidden = false;
      $("auth-message").textContent = (body.error && body.error.message) || "API key needed";
    }
    if (!response.ok) {
      const err = new Error((body.error && body.error.message) || `HTTP ${response.status}`);
      err.status = response.status;
      throw err;
    }
    return body;
  }

  // Highlights come HTML-escaped with <mark> tags (Elasticsearch's html encoder); build DOM
  // nodes from them instead of assigning innerHTML, so nothing else can become markup.
  // A detached <textarea> decodes entities as text (RCDATA: no markup, whitespace kept; an
  // HTML document parser would drop a fragment's leading space).
  const entityDecoder = document.createElement("textarea");
  function decodeEntities(text) {
    entityDecoder.innerHTML = text;
    return entityDecoder.value;
  }

  function highlighted(fragment) {
    const out = document.createDocumentFragment();
    let marked = false;
    for (const part of fragment.split(/(<\/?mark>)/)) {
      if (part === "<mark>") { marked = true; continue; }
      if (part === "</mark>") { marked = false; continue; }
      const text = decodeEntities(part);
      if (marked) {
        const m = document.createElement("mark");
        m.textContent = text;
        out.appendChild(m);
      } else {
        out.appendChild(document.createTextNode(text));
      }
    }
    return out;
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v; else node.setAttribute(k, v);
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    }
    return node;
  }

  function when(iso) {
    if (!iso) return "undated";
    const d = new Date(iso);
    return d.toISOString().slice(0, 16).replace("T", " ");
  }

  function plural(n, word) { return `${n} ${word}${n === 1 ? "" : "s"}`; }

  function currentRequest() {
    return {
      q: $("q").value.trim(),
      sort: $("sort").value,
      outlet: $("outlet").value,
      lang: $("lang").value,
      from: $("from").value,
      to: $("to").value,
    };
  }

  function renderStory(hit) {
    const story = hit.story || { articles: 1, outlets: [hit.outlet] };
    const titleLink = el("a", { href: hit.url, target: "_blank", rel: "noopener noreferrer" });
    const titleHl = hit.highlight.title && hit.highlight.title[0];
    titleLink.appendChild(titleHl ? highlighted(titleHl) : document.createTextNode(hit.title || "(untitled)"));
    const count = el("span", { class: "count" },
      `${plural(story.articles, "article")} · ${plural(story.outlets.length, "outlet")}`);
    const snippet = el("p", { class: "snippet" });
    for (const frag of hit.highlight.text || []) {
      snippet.appendChild(highlighted(frag));
      snippet.appendChild(document.createTextNode(" … "));
    }
    const item = el("li", { class: "story", "data-story-id": hit.story_id },
      el("h3", null, titleLink),
      el("div", { class: "meta" }, `${hit.outlet} · ${when(hit.published_at)}`, count),
      snippet);
    if (story.articles > 1) {
      const button = el("button", { type: "button", class: "expand", "aria-expanded": "false" },
        `Show ${plural(story.articles, "article")}`);
      button.addEventListener("click", () => toggleArticles(item, button, hit.story_id));
      item.appendChild(button);
    }
    return item;
  }

  async function toggleArticles(item, button, storyId) {
    const open = item.querySelector(".articles");
    if (open) {
      open.remove();
      button.setAttribute("aria-expanded", "false");
      button.textContent = button.textContent.replace("Hide", "Show");
      return;
    }
    const data = await api(`/v1/stories/${encodeURIComponent(storyId)}`, { size: 50 });
    const list = el("ul", { class: "articles" });
    for (const a of data.articles) {
      list.appendChild(el("li", null,
        el("a", { href: a.url, target: "_blank", rel: "noopener noreferrer" }, a.title || a.url),
        el("span", { class: "meta" }, ` — ${a.outlet} · ${when(a.published_at)}`)));
    }
    item.appendChild(list);
    button.setAttribute("aria-expanded", "true");
    button.textContent = button.textContent.replace("Show", "Hide");
  }

  function fillSelect(select, buckets, label) {
    const chosen = select.value;
    const keys = new Set(buckets.map((b) => b.key));
    if (chosen) keys.add(chosen);
    select.replaceChildren(el("option", { value: "" }, label));
    for (const key of [...keys].sort()) select.appendChild(el("option", { value: key }, key));
    select.value = chosen;
  }

  function renderFacetList(list, buckets, select) {
    list.replaceChildren();
    for (const b of buckets) {
      const li = el("li", { "data-key": b.key, title: `${b.articles} articles` },
        el("span", null, b.key), el("span", null, String(b.stories)));
      if (select.value === b.key) li.classList.add("active");
      li.addEventListener("click", () => {
        select.value = select.value === b.key ? "" : b.key;
        runSearch();
      });
      list.appendChild(li);
    }
  }

  function renderFacets(facets) {
    if (!facets) return;
    fillSelect($("outlet"), facets.outlets, "All outlets");
    fillSelect($("lang"), facets.languages, "All languages");
    renderFacetList($("facet-outlets"), facets.outlets, $("outlet"));
    renderFacetList($("facet-languages"), facets.languages, $("lang"));
    const histogram = $("histogram");
    histogram.replaceChildren();
    const max = Math.max(1, ...facets.published.map((b) => b.stories));
    for (const b of facets.published) {
      const bar = el("div", { class: "bar", title: `${b.key.slice(0, 10)}: ${plural(b.stories, "story")}` });
      bar.style.height = `${Math.round((100 * b.stories) / max)}%`;
      histogram.appendChild(bar);
    }
  }

  async function runSearch(more) {
    if (state.busy) {  // one request at a time; a new search waits for the running one
      if (!more) state.queued = true;
      return;
    }
    state.busy = true;
    $("error").hidden = true;
    try {
      if (!more) { state.request = currentRequest(); state.token = null; }
      const query = { ...state.request, size: PAGE_SIZE, token: state.token || "" };
      const data = await api("/v1/search", query);
      if (!more) {
        $("results").replaceChildren();
        renderFacets(data.facets);
        const stories = data.facets ? data.facets.stories : data.hits.length;
        $("summary").textContent = data.hits.length
          ? `${plural(stories, "story")}, ${plural(data.articles_total, "article")} (${data.took_ms} ms)`
          : "No stories match.";
      }
      for (const hit of data.hits) $("results").appendChild(renderStory(hit));
      state.token = data.next_token;
      $("more").hidden = !state.token;
      const url = new URL(location.href);
      url.searchParams.set("q", state.request.q);
      history.replaceState(null, "", url);
    } catch (err) {
      $("error").textContent = err.message;
      $("error").hidden = false;
      if (err.status === 410) { state.token = null; $("more").hidden = true; }
    } finally {
      state.busy = false;
      if (state.queued) { state.queued = false; runSearch(); }
    }
  }

  async function pollNewStories() {
    try {
      const data = await api("/v1/stories/new", { size: 10 });
      const list = $("new-stories");
      const firstLoad = state.known === null;
      state.known = state.known || new Set();
      list.replaceChildren();
      for (const s of data.stories) {
        const li = el("li", { "data-story-id": s.story_id },
          el("span", null, s.title || s.story_id),
          el("span", { class: "when" },
            `${when(s.first_seen)} · ${plural(s.articles, "article")} · ${s.outlets.join(", ")}`));
        if (!firstLoad && !state.known.has(s.story_id)) li.classList.add("fresh");
        li.addEventListener("click", () => { $("q").value = s.title || ""; runSearch(); });
        list.appendChild(li);
      }
      for (const s of data.stories) state.known.add(s.story_id);
      $("live-dot").classList.remove("off");
    } catch (err) {
      $("live-dot").classList.add("off");
    } finally {
      setTimeout(pollNewStories, POLL_MS);
    }
  }

  function init() {
    $("q").value = params.get("q") || "";
    $("search-form").addEventListener("submit", (e) => { e.preventDefault(); runSearch(); });
    for (const id of ["sort", "outlet", "lang", "from", "to"]) {
      $(id).addEventListener("change", () => runSearch());
    }
    $("clear").addEventListener("click", () => {
      for (const id of ["outlet", "lang", "from", "to"]) $(id).value = "";
      runSearch();
    });
    $("more").addEventListener("click", () => runSearch(true));
    $("save-key").addEventListener("click", () => {
      localStorage.setItem("newsflow-api-key", $("api-key").value.trim());
      $("auth").hidden = true;
      runSearch();
    });
    runSearch();
    pollNewStories();
  }

  init();
})();
