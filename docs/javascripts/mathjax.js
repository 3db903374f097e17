// MathJax 3 configuration for pymdownx.arithmatex (generic mode): typeset only the spans and divs
// that arithmatex marks, and typeset again after each instant-navigation page change of Material.
// MathJax itself is bundled with the site (vendor/mathjax/tex-svg-full.js, see the Makefile): SVG
// output needs no font files, so equations render with no network and from file://.
window.MathJax = {
  tex: {
    inlineMath: [["\\(", "\\)"]],
    displayMath: [["\\[", "\\]"]],
    processEscapes: true,
    processEnvironments: true,
  },
  svg: {
    fontCache: "global",
  },
  options: {
    ignoreHtmlClass: ".*|",
    processHtmlClass: "arithmatex",
  },
};

if (typeof document$ !== "undefined") {
  document$.subscribe(() => {
    if (window.MathJax && window.MathJax.typesetPromise) {
      if (MathJax.startup.output.clearCache) {  // CHTML output only; SVG has no font cache
        MathJax.startup.output.clearCache();
      }
      MathJax.typesetClear();
      MathJax.texReset();
      MathJax.typesetPromise();
    }
  });
}
