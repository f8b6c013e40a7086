/**
 * Class probabilities as horizontal bars (DOM only; built once, then only widths change).
 * @module probs
 */

/**
 * @param {HTMLElement} el container
 * @param {string[]} classes
 * @param {number[]} probs one per class
 * @param {number} [label] index to highlight
 */
export function renderProbs(el, classes, probs, label = -1) {
  if (el.childElementCount !== classes.length) {
    el.textContent = '';
    for (const name of classes) {
      const row = document.createElement('div');
      row.className = 'prob';
      row.innerHTML = '<span class="prob-name"></span><span class="prob-bar"><span></span></span><span class="prob-value"></span>';
      row.querySelector('.prob-name').textContent = name;
      el.append(row);
    }
  }
  for (let i = 0; i < classes.length; i++) {
    const row = el.children[i];
    const p = Number(probs[i]) || 0;
    row.classList.toggle('top', i === label);
    row.querySelector('.prob-bar > span').style.width = `${Math.max(0, Math.min(1, p)) * 100}%`;
    row.querySelector('.prob-value').textContent = `${(p * 100).toFixed(1)}%`;
  }
}
