// Diagrams with no network: mkdocs-material draws ```mermaid blocks with the global `mermaid`,
// which it links from a CDN only when none is loaded. On a page that holds a diagram, this loads
// the copy bundled with the site (vendor/mermaid, see the Makefile) while the page is still being
// parsed, so it is there before the theme looks; other pages do not load it (2.7 MB).
(function () {
  if (typeof mermaid !== "undefined" || !document.querySelector(".mermaid")) {
    return;
  }
  var base = document.currentScript.src.replace(/[^/]*$/, "");
  document.write('<script src="' + base + 'vendor/mermaid/mermaid.min.js"><\/script>');
})();
