"""The footer, k9s style: only keys that work here, the most important first, `?` always.

Textual's Footer lists every binding in the chain, disabled ones included, and
cuts the row at the terminal's width, so at 140 columns `?` used to vanish while
keys that did nothing on that screen took its place.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.events import Resize
from textual.widgets import Footer
from textual.widgets._footer import FooterKey

# Less important keys drop out first when the row is full; `help` never does.
LAST = {"command_line", "quit", "app.quit", "toggle_dark"}


def _rank(binding: Binding) -> int:
    if binding.action == "help":
        return 0
    return 2 if binding.action in LAST else 1


class OpsFooter(Footer):
    def __init__(self, **kwargs) -> None:
        super().__init__(show_command_palette=False, **kwargs)
        self._composed_width = 0

    def _cost(self, binding: Binding) -> int:
        # FooterKey draws " key description " plus a column of padding.
        return len(self.app.get_key_display(binding)) + len(binding.description) + 3

    def compose(self) -> ComposeResult:
        if not self._bindings_ready:
            return
        seen: dict[str, tuple[Binding, str]] = {}
        for _node, binding, enabled, tooltip in self.screen.active_bindings.values():
            # A key that does nothing here is not shown at all.
            if binding.show and enabled and binding.action not in seen:
                seen[binding.action] = (binding, tooltip)
        ordered = sorted(seen.values(), key=lambda pair: _rank(pair[0]))
        width = self.size.width or self.app.size.width
        self._composed_width = width
        room = width - sum(self._cost(b) for b, _ in ordered if b.action == "help")
        chosen = []
        for binding, tooltip in ordered:
            if binding.action != "help":
                cost = self._cost(binding)
                if cost > room:
                    continue
                room -= cost
            chosen.append((binding, tooltip))
        self.styles.grid_size_columns = len(chosen)
        for binding, tooltip in chosen:
            yield FooterKey(
                binding.key,
                self.app.get_key_display(binding),
                binding.description,
                binding.action,
                tooltip=tooltip,
            ).data_bind(compact=Footer.compact)

    def on_resize(self, event: Resize) -> None:
        if event.size.width != self._composed_width:
            self.call_after_refresh(self.recompose)

    def visible_actions(self) -> list[str]:
        return [key.action for key in self.query(FooterKey)]
