//! Small browser helpers for the components: moving focus in menus and dialogs, the clipboard, and telling
//! whether a popover is showing. Called only from event handlers and effects, which run in the
//! browser.

use leptos::prelude::{document, window};
use leptos::wasm_bindgen::JsCast;

/// Where a key press moves the focus within a menu.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MenuMove {
    Next,
    Previous,
    First,
    Last,
}

impl MenuMove {
    /// The move a key asks for, if any.
    pub fn from_key(key: &str) -> Option<MenuMove> {
        match key {
            "ArrowDown" => Some(MenuMove::Next),
            "ArrowUp" => Some(MenuMove::Previous),
            "Home" => Some(MenuMove::First),
            "End" => Some(MenuMove::Last),
            _ => None,
        }
    }
}

/// Moves the focus among the elements of `container` matching `selector`, wrapping around.
pub fn move_focus(container: &web_sys::Element, selector: &str, movement: MenuMove) {
    let Ok(found) = container.query_selector_all(selector) else { return };
    let items: Vec<web_sys::HtmlElement> = (0..found.length()).filter_map(|index| found.item(index)?.dyn_into().ok()).collect();
    if items.is_empty() {
        return;
    }
    let active = document().active_element();
    let current = items.iter().position(|item| active.as_ref().is_some_and(|active| active == item.unchecked_ref::<web_sys::Element>()));
    let last = items.len() - 1;
    let next = match (movement, current) {
        (MenuMove::First, _) | (MenuMove::Next, None) => 0,
        (MenuMove::Last, _) | (MenuMove::Previous, None) => last,
        (MenuMove::Next, Some(index)) => {
            if index == last {
                0
            } else {
                index + 1
            }
        }
        (MenuMove::Previous, Some(index)) => {
            if index == 0 {
                last
            } else {
                index - 1
            }
        }
    };
    let _ = items[next].focus();
}

/// Focuses the first element of `container` matching `selector`.
pub fn focus_first(container: &web_sys::Element, selector: &str) {
    if let Ok(Some(element)) = container.query_selector(selector) {
        if let Ok(element) = element.dyn_into::<web_sys::HtmlElement>() {
            let _ = element.focus();
        }
    }
}

/// Focuses the element with this id, if it exists.
pub fn focus_id(id: &str) {
    if let Some(element) = document().get_element_by_id(id).and_then(|element| element.dyn_into::<web_sys::HtmlElement>().ok()) {
        let _ = element.focus();
    }
}

/// True when this popover is showing.
pub fn is_popover_open(element: &web_sys::Element) -> bool {
    element.matches(":popover-open").unwrap_or(false)
}

/// Puts `text` on the clipboard (the browser may refuse outside a secure context; nothing breaks then).
pub fn copy_to_clipboard(text: &str) {
    let _ = window().navigator().clipboard().write_text(text);
}
