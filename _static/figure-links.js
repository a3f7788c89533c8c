// Each figure's image opens at full size (a 2x image) when clicked or tapped: on a phone a wide
// figure is shrunk to the width of the screen, and its labels are legible only at full size. A
// phone reader is told so under the figure.
document.addEventListener("DOMContentLoaded", () => {
  for (const img of document.querySelectorAll(".bd-article figure img")) {
    let link = img.closest("a"); // Sphinx links an image of a set size to itself already
    if (!link) {
      link = document.createElement("a");
      link.href = img.src;
      img.replaceWith(link);
      link.appendChild(img);
    }
    link.title = "Open the figure at full size";
    link.classList.add("plinknet-enlarge");
    const caption = img.closest("figure").querySelector("figcaption");
    if (caption) {
      const hint = document.createElement("span");
      hint.className = "plinknet-enlarge-hint";
      hint.textContent = "Tap the image to open it at full size.";
      caption.appendChild(hint);
    }
  }

  // A table wider than the column scrolls sideways; say so above it, and only while it does.
  const tables = document.querySelectorAll(".bd-article .pst-scrollable-table-container");
  const mark = () => {
    for (const box of tables) {
      box.classList.toggle("plinknet-scrolls", box.scrollWidth > box.clientWidth + 1);
    }
  };
  mark();
  window.addEventListener("resize", mark);
});
