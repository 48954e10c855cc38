//! The pages, as maud templates: checked at compile time, and every interpolated value is
//! HTML-escaped, so a username or a device label cannot inject markup. No page has a script.

use maud::{html, Markup, DOCTYPE};

use crate::session::Timestamp;
use crate::store::SessionRecord;

/// What the dashboard shows of one session.
pub(super) struct SessionRow<'a> {
    pub(super) session: &'a SessionRecord,
    pub(super) current: bool,
}

fn layout(title: &str, body: &Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · sessiond" }
                link rel="stylesheet" href="/static/app.css";
            }
            body { main { (body) } }
        }
    }
}

fn messages(error: Option<&str>, notice: Option<&str>) -> Markup {
    html! {
        @if let Some(notice) = notice { p.notice role="status" { (notice) } }
        @if let Some(error) = error { p.error role="alert" { (error) } }
    }
}

/// The username and password inputs both forms share.
fn credentials(username: &str, new_password: bool) -> Markup {
    html! {
        label for="username" { "Username" }
        input #username name="username" type="text" autocomplete="username" autocapitalize="none"
            spellcheck="false" required autofocus value=(username);
        label for="password" { "Password" }
        input #password name="password" type="password" required
            autocomplete=(if new_password { "new-password" } else { "current-password" });
    }
}

/// `GET /`: sign in.
pub(super) fn sign_in(username: &str, error: Option<&str>, notice: Option<&str>) -> Markup {
    let body = html! {
        h1 { "Sign in" }
        (messages(error, notice))
        form #login .stacked method="post" action="/login" {
            (credentials(username, false))
            button type="submit" { "Sign in" }
        }
        p { "No account yet? " a href="/register" { "Create one" } }
    };
    layout("Sign in", &body)
}

/// `GET /register`: create an account.
pub(super) fn register(username: &str, error: Option<&str>) -> Markup {
    let body = html! {
        h1 { "Create an account" }
        (messages(error, None))
        form #register .stacked method="post" action="/register" {
            (credentials(username, true))
            button type="submit" { "Create account" }
        }
        p { "Already registered? " a href="/" { "Sign in" } }
    };
    layout("Create an account", &body)
}

fn when(at: Timestamp) -> Markup {
    let text = at.to_rfc3339();
    // "2026-12-06T21:34:37.642Z" reads as "2026-12-06 21:34 UTC".
    let short = format!("{} UTC", text.get(..16).unwrap_or(&text).replacen('T', " ", 1));
    html! { time datetime=(text) { (short) } }
}

/// `GET /account`: who is signed in, and their sessions.
pub(super) fn account(username: &str, roles: &[String], sessions: &[SessionRow<'_>]) -> Markup {
    let body = html! {
        h1 { "Signed in as " span #username { (username) } }
        p { "Roles: " span #roles { (roles.join(", ")) } }
        h2 { "Your sessions" }
        div.table-wrap {
            table #sessions {
                thead { tr { th { "Device" } th { "Address" } th { "Signed in" } th { "Last seen" } th { span.muted { "Action" } } } }
                tbody {
                    @for row in sessions {
                        tr.session.current[row.current] {
                            td { (row.session.device.as_deref().unwrap_or("Unknown device")) }
                            td { (row.session.ip.map_or_else(|| "—".to_owned(), |ip| ip.to_string())) }
                            td { (when(row.session.created_at)) }
                            td { (when(row.session.last_seen_at)) }
                            td {
                                @if row.current {
                                    span.muted { "this session" }
                                } @else {
                                    form.revoke method="post" action="/account/sessions/revoke" {
                                        input type="hidden" name="session_id" value=(row.session.session_id.as_str());
                                        button.revoke type="submit" { "Revoke" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        div.actions {
            form method="post" action="/logout" { button #logout type="submit" { "Sign out" } }
            form method="post" action="/account/logout-all" {
                button #logout-all type="submit" { "Sign out everywhere else" }
            }
        }
    };
    layout("Your account", &body)
}

/// Any other failure, with its status and our problem text.
pub(super) fn failure(title: &str, detail: &str) -> Markup {
    let body = html! {
        h1 { (title) }
        p.error role="alert" { (detail) }
        p { a href="/" { "Back to the sign-in page" } }
    };
    layout(title, &body)
}
