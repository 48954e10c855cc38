//! The sign-in web app: server-rendered pages and plain HTML forms, no script at all.
//!
//! It uses the same services as the API and the cookie transport only: the session token is
//! set in the `HttpOnly` cookie by a redirect and never appears in a page. Every form post is
//! held to the cross-site rule of `csrf` whether or not it carries a cookie (a forged sign-in
//! would log the victim into the attacker's account), and every page carries a
//! `Content-Security-Policy` that allows no script, no inline style, no framing and no form
//! target but this site.

mod pages;

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::rejection::FormRejection;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;

use super::auth::{session_cleared, session_headers, Transport};
use super::extract::{AuthSession, PresentedToken};
use super::AppState;
use crate::error::Error;
use crate::service::ClientMeta;
use crate::users::Password;

/// Scripts: none. Styles and everything else: this origin only. No framing, no plugins, no
/// `<base>`, and forms post here only.
const CSP: HeaderValue = HeaderValue::from_static(
    "default-src 'self'; script-src 'none'; style-src 'self'; img-src 'self'; object-src 'none'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
);

/// The sign-in error: the same for an unknown user, a wrong password and a disabled account.
const INCORRECT: &str = "The username or password is incorrect.";

const STYLESHEET: &str = include_str!("app.css");

/// The web app's routes.
pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(sign_in_page))
        .route("/login", post(sign_in))
        .route("/register", get(register_page).post(register))
        .route("/account", get(account))
        .route("/account/sessions/revoke", post(revoke))
        .route("/account/logout-all", post(logout_everywhere_else))
        .route("/logout", post(logout))
        .route("/static/app.css", get(stylesheet))
}

/// A form post that passed the cross-site check (see the module docs).
struct SameOrigin;

impl FromRequestParts<Arc<AppState>> for SameOrigin {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, Error> {
        state.csrf.check(parts).map(|()| Self)
    }
}

/// Fields of the sign-in and registration forms.
#[derive(Deserialize)]
struct CredentialsForm {
    username: String,
    password: String,
}

#[derive(Deserialize)]
struct RevokeForm {
    session_id: String,
}

/// An HTML page with `status`.
fn page(status: StatusCode, markup: maud::Markup) -> Response {
    let mut response = (status, markup.into_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    headers.insert(header::CONTENT_SECURITY_POLICY, CSP);
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

/// 303 to `location` (a GET after a form post).
fn see_other(location: &'static str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, HeaderValue::from_static(location))]).into_response()
}

/// Any error as a page: its status and our problem text (never a detail of the cause).
fn failure(error: &Error) -> Response {
    let problem = error.problem();
    let mut response = page(error.status(), pages::failure(problem.title, &problem.detail));
    if error.status() == StatusCode::SERVICE_UNAVAILABLE {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

/// `GET /`: the sign-in page, or the dashboard when already signed in.
async fn sign_in_page(session: Result<AuthSession, Error>, Query(query): Query<HashMap<String, String>>) -> Response {
    if session.is_ok() {
        return see_other("/account");
    }
    let notice = query.contains_key("registered").then_some("Your account is ready: sign in.");
    page(StatusCode::OK, pages::sign_in("", None, notice))
}

/// `POST /login`: sign in, then 303 to the dashboard with the session cookie.
async fn sign_in(
    State(state): State<Arc<AppState>>,
    _: SameOrigin,
    PresentedToken(previous): PresentedToken,
    meta: ClientMeta,
    form: Result<Form<CredentialsForm>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return page(StatusCode::BAD_REQUEST, pages::sign_in("", Some("Enter a username and a password."), None));
    };
    match state.sessions.login(&form.username, Password::unchecked(form.password), meta, previous).await {
        Ok(issued) => {
            let mut response = see_other("/account");
            session_headers(&state, &issued, Transport::Cookie, &mut response);
            response
        }
        Err(Error::InvalidCredentials) => {
            page(StatusCode::UNAUTHORIZED, pages::sign_in(&form.username, Some(INCORRECT), None))
        }
        Err(Error::RateLimited(decision)) => {
            let text = format!("Too many attempts: try again in {} s.", decision.reset_secs);
            let mut response = page(StatusCode::TOO_MANY_REQUESTS, pages::sign_in(&form.username, Some(&text), None));
            if let Ok(value) = HeaderValue::from_str(&decision.reset_secs.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            response
        }
        Err(error) => failure(&error),
    }
}

/// `GET /register`.
async fn register_page() -> Response {
    page(StatusCode::OK, pages::register("", None))
}

/// `POST /register`: create the account, then 303 to the sign-in page.
async fn register(
    State(state): State<Arc<AppState>>,
    _: SameOrigin,
    meta: ClientMeta,
    form: Result<Form<CredentialsForm>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return page(StatusCode::BAD_REQUEST, pages::register("", Some("Enter a username and a password.")));
    };
    match state.users.register(&form.username, form.password, &meta).await {
        Ok(_) => see_other("/?registered=1"),
        Err(Error::UsernameTaken) => {
            page(StatusCode::CONFLICT, pages::register(&form.username, Some("That username is taken.")))
        }
        Err(Error::InvalidField { field, detail }) => {
            let what = if field == "username" { "The username" } else { "The password" };
            let text = format!("{what} {detail}.");
            page(StatusCode::UNPROCESSABLE_ENTITY, pages::register(&form.username, Some(&text)))
        }
        Err(error) => failure(&error),
    }
}

/// `GET /account`: the dashboard; without a session, back to the sign-in page.
async fn account(State(state): State<Arc<AppState>>, session: Result<AuthSession, Error>) -> Response {
    let auth = match session {
        Ok(AuthSession(auth)) => auth,
        Err(Error::Unauthorized) => return see_other("/"),
        Err(error) => return failure(&error),
    };
    let sessions = match state.sessions.list(&auth).await {
        Ok(sessions) => sessions,
        Err(error) => return failure(&error),
    };
    let current = &auth.session().session_id;
    let rows: Vec<pages::SessionRow<'_>> =
        sessions.iter().map(|session| pages::SessionRow { session, current: &session.session_id == current }).collect();
    page(StatusCode::OK, pages::account(&auth.session().username, auth.roles(), &rows))
}

/// `POST /account/sessions/revoke`: end one of the caller's other sessions.
async fn revoke(
    State(state): State<Arc<AppState>>,
    _: SameOrigin,
    meta: ClientMeta,
    session: Result<AuthSession, Error>,
    form: Result<Form<RevokeForm>, FormRejection>,
) -> Response {
    let auth = match session {
        Ok(AuthSession(auth)) => auth,
        Err(Error::Unauthorized) => return see_other("/"),
        Err(error) => return failure(&error),
    };
    if let Ok(Form(form)) = form {
        // A session that ended meanwhile is as good as revoked.
        match state.sessions.revoke(&auth, &form.session_id, &meta).await {
            Ok(()) | Err(Error::NotFound(_)) => {}
            Err(error) => return failure(&error),
        }
    }
    see_other("/account")
}

/// `POST /account/logout-all`: end every other session of the caller.
async fn logout_everywhere_else(
    State(state): State<Arc<AppState>>,
    _: SameOrigin,
    meta: ClientMeta,
    session: Result<AuthSession, Error>,
) -> Response {
    match session {
        Ok(AuthSession(auth)) => match state.sessions.revoke_all(&auth, true, &meta).await {
            Ok(_) => see_other("/account"),
            Err(error) => failure(&error),
        },
        Err(Error::Unauthorized) => see_other("/"),
        Err(error) => failure(&error),
    }
}

/// `POST /logout`: end this session and forget the cookie; back to the sign-in page.
async fn logout(
    State(state): State<Arc<AppState>>,
    _: SameOrigin,
    meta: ClientMeta,
    session: Result<AuthSession, Error>,
) -> Response {
    match session {
        Ok(AuthSession(auth)) => match state.sessions.logout(&auth, &meta).await {
            Ok(()) | Err(Error::Unauthorized) => {}
            Err(error) => return failure(&error),
        },
        Err(Error::Unauthorized) => {}
        Err(error) => return failure(&error),
    }
    session_cleared(&state, see_other("/"))
}

/// `GET /static/app.css`.
async fn stylesheet() -> Response {
    ([(header::CONTENT_TYPE, HeaderValue::from_static("text/css; charset=utf-8"))], STYLESHEET).into_response()
}
