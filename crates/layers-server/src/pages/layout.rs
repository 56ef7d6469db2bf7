//! The page shells: the public card (sign-up, login, recovery) and the signed-in layout with
//! its navigation, on one stylesheet. Invariant: no inline script or style (the CSP forbids
//! both); every interpolated value is escaped by maud.

use maud::{html, Markup, DOCTYPE};

/// A notice above a form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tone {
    Ok,
    Bad,
}

pub fn notice(tone: Tone, text: &str) -> Markup {
    let class = match tone {
        Tone::Ok => "notice ok",
        Tone::Bad => "notice bad",
    };
    html! { div class=(class) role=(if tone == Tone::Bad { "alert" } else { "status" }) { p { (text) } } }
}

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            meta name="color-scheme" content="light";
            title { (title) " · Layers" }
            link rel="stylesheet" href=(super::assets::CSS_PATH);
            script src=(super::assets::JS_PATH) defer {}
            link rel="icon" href="data:,";
        }
    }
}

fn brand() -> Markup {
    html! { a class="brand" href="/" { span class="brand-mark" aria-hidden="true" { "L" } "Layers" } }
}

/// A public page: the brand above a centred card.
pub fn public(title: &str, card: Markup, foot: Option<Markup>) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                main class="auth" {
                    (brand())
                    div class="card" { (card) }
                    @if let Some(foot) = foot { div class="auth-foot" { (foot) } }
                }
                (footer())
            }
        }
    }
}

/// The sections of the signed-in area, as the navigation shows them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Section {
    Overview,
    Keys,
    Usage,
    Billing,
    Security,
    Settings,
}

const SECTIONS: [(Section, &str, &str); 6] = [
    (Section::Overview, "/dashboard", "Overview"),
    (Section::Keys, "/dashboard/keys", "API keys"),
    (Section::Usage, "/dashboard/usage", "Usage"),
    (Section::Billing, "/dashboard/billing", "Billing"),
    (Section::Security, "/dashboard/security", "Security"),
    (Section::Settings, "/dashboard/settings", "Settings"),
];

/// A signed-in page: the top bar (navigation, who is signed in, log out) and the content.
pub fn app(title: &str, current: Section, email: &str, csrf: &str, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                header class="top" {
                    div class="top-in" {
                        (brand())
                        nav class="nav" aria-label="Dashboard" {
                            @for (section, href, label) in SECTIONS {
                                @if section == current {
                                    a href=(href) aria-current="page" { (label) }
                                } @else {
                                    a href=(href) { (label) }
                                }
                            }
                        }
                        div class="who" {
                            span class="email" { (email) }
                            form method="post" action="/logout" {
                                input type="hidden" name="csrf" value=(csrf);
                                button class="btn secondary small" type="submit" { "Log out" }
                            }
                        }
                    }
                }
                main class="page" { (content) }
                (footer())
            }
        }
    }
}

fn footer() -> Markup {
    html! { footer class="foot" { "Layers · one API for every model, paid from prepaid credits" } }
}

/// The hidden CSRF field of a form.
pub fn csrf_field(token: &str) -> Markup {
    html! { input type="hidden" name="csrf" value=(token); }
}

/// A password field with its hint.
pub fn password_field(name: &str, label: &str, autocomplete: &str, hint: Option<&str>) -> Markup {
    html! {
        div class="field" {
            label for=(name) { (label) }
            input id=(name) name=(name) type="password" autocomplete=(autocomplete) required
                minlength=(if autocomplete == "new-password" { "12" } else { "1" }) maxlength="256";
            @if let Some(hint) = hint { span class="hint" { (hint) } }
        }
    }
}

pub fn email_field(value: &str, autofocus: bool) -> Markup {
    html! {
        div class="field" {
            label for="email" { "E-mail address" }
            @if autofocus {
                input id="email" name="email" type="email" autocomplete="email" required maxlength="254" value=(value) autofocus;
            } @else {
                input id="email" name="email" type="email" autocomplete="email" required maxlength="254" value=(value);
            }
        }
    }
}
