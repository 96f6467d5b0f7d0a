// Progressive enhancement for the home page: a box that filters the lists of
// issues and publications by words. Without JavaScript the full lists show.
(function () {
  "use strict";
  var holder = document.getElementById("filter");
  var lists = document.querySelectorAll("[data-filter-list]");
  if (!holder || !lists.length || !document.querySelector) {
    return;
  }
  var words = {}; // search id -> the item's words, from search-index.json

  holder.innerHTML =
    '<form role="search" action="#">' +
    '<label for="filter-input">Filter News Updates and publications</label>' +
    '<input id="filter-input" type="search" autocomplete="off" spellcheck="false">' +
    '<p id="filter-status" aria-live="polite"></p>' +
    "</form>";
  holder.hidden = false;
  var form = holder.querySelector("form");
  var input = holder.querySelector("input");
  var status = holder.querySelector("#filter-status");

  function textOf(item) {
    return words[item.getAttribute("data-search-id")] || item.textContent.toLowerCase();
  }

  function apply() {
    var query = input.value.toLowerCase().split(/\s+/).filter(Boolean);
    var parts = [];
    Array.prototype.forEach.call(lists, function (list) {
      var shown = 0;
      var items = list.querySelectorAll("[data-search-id]");
      Array.prototype.forEach.call(items, function (item) {
        var text = textOf(item);
        var match = query.every(function (word) { return text.indexOf(word) !== -1; });
        item.hidden = !match;
        shown += match ? 1 : 0;
      });
      parts.push(shown + " of " + items.length + " " + list.getAttribute("data-noun"));
    });
    status.textContent = query.length ? "Showing " + parts.join(" and ") + "." : "";
  }

  input.addEventListener("input", apply);
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    apply();
  });

  // The index holds more than the page shows (bullets, prompts, themes); if it
  // cannot be loaded the visible text is used instead. Browsers refuse fetch()
  // from file://, so a site opened from disk does not try.
  if (window.fetch && window.location.protocol !== "file:") {
    fetch(holder.getAttribute("data-index"))
      .then(function (response) { return response.ok ? response.json() : { items: [] }; })
      .then(function (index) {
        index.items.forEach(function (entry) { words[entry.id] = entry.text; });
        holder.setAttribute("data-index-loaded", "");
        apply();
      })
      .catch(function () {});
  }
})();
