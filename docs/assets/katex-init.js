// Typesets the TeX that pymdownx.arithmatex (generic mode) leaves in the page:
// <span class="arithmatex">\(…\)</span> inline and <div class="arithmatex">\[…\]</div> displayed,
// with the KaTeX vendored in assets/katex (nothing is fetched from the network).
(function () {
  function typeset(root) {
    root.querySelectorAll(".arithmatex").forEach(function (el) {
      if (el.dataset.typeset) { return; }
      var tex = el.textContent.trim();
      var display = el.tagName === "DIV";
      tex = tex.replace(/^\\[([]/, "").replace(/\\[)\]]$/, "");
      katex.render(tex, el, { displayMode: display, throwOnError: false });
      el.dataset.typeset = "1";
    });
  }
  if (typeof document$ !== "undefined") {  // mkdocs-material's page observable (instant loading)
    document$.subscribe(function () { typeset(document); });
  } else {
    document.addEventListener("DOMContentLoaded", function () { typeset(document); });
  }
})();
