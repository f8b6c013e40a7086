/*
 * The <head> parts sender.html and receiver.html share, in one place (the server serves
 * static files as they are: no templating). A classic, synchronous script, so that what it
 * adds is in the head before the body is parsed:
 *
 *   <meta charset="utf-8">                      (must be in the first bytes: stays in the page)
 *   <title>SplitRTC sender</title>
 *   <script src="/static/js/ui/head.js"></script>
 *   <script type="module" src="/static/js/sender.js"></script>
 *
 * adds the viewport, the (empty) icon and the stylesheets, and reports a page script that
 * cannot be loaded (node_modules not installed on the server: a missing /vendor file fails
 * the whole module graph) on the status line instead of leaving a silent "Loading…" page.
 * `data-css` on this script names further stylesheets (space-separated URLs).
 */
(function () {
  'use strict';
  var me = document.currentScript;
  var head = document.head;
  function add(tag, attrs) {
    var el = document.createElement(tag);
    for (var k in attrs) el.setAttribute(k, attrs[k]);
    head.insertBefore(el, me); // in order, where the script is
    return el;
  }
  add('meta', { name: 'viewport', content: 'width=device-width, initial-scale=1' });
  add('link', { rel: 'icon', href: 'data:,' });
  var sheets = ['/static/css/app.css', '/static/css/pages.css'];
  var extra = me && me.dataset.css ? me.dataset.css.split(/\s+/).filter(Boolean) : [];
  sheets.concat(extra).forEach(function (href) { add('link', { rel: 'stylesheet', href: href }); });

  function report() {
    var s = document.getElementById('status');
    if (!s) return;
    s.textContent = 'Could not load the page scripts (are node_modules installed on the server?).';
    s.dataset.kind = 'error';
  }
  // a <script> that fails to load fires "error" at the element, which does not bubble: the
  // capture phase on window sees it
  window.addEventListener('error', function (e) {
    var t = e.target;
    if (!t || t.tagName !== 'SCRIPT' || t.type !== 'module') return;
    if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', report, { once: true });
    else report();
  }, true);
}());
