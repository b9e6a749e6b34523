//! `${ENV_VAR}` substitution in single-quoted string literals. It works on the token stream, so
//! it reaches every literal of every statement (misql's own and plain SQL) and nothing else:
//! identifiers, comments and double-quoted names are left alone. `$${` stands for a literal `${`.

use sqlparser::tokenizer::{Token, TokenWithSpan};

use super::parser::location;
use crate::{Error, Location, Result};

/// Replaces `${NAME}` in every single-quoted string token with `env(NAME)`.
pub(crate) fn substitute(
    tokens: &mut [TokenWithSpan],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<()> {
    for token in tokens {
        let at = location(token.span.start);
        if let Token::SingleQuotedString(text)
        | Token::EscapedStringLiteral(text)
        | Token::NationalStringLiteral(text)
        | Token::TripleSingleQuotedString(text) = &mut token.token
            && text.contains('$')
        {
            *text = substitute_text(text, env, at)?;
        }
    }
    Ok(())
}

/// Substitutes one literal's text; errors are reported at the literal's start `at`.
pub(crate) fn substitute_text(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
    at: Location,
) -> Result<String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        rest = &rest[dollar..];
        if let Some(after) = rest.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
        } else if let Some(after) = rest.strip_prefix("${") {
            let (name, after) = variable(after, at)?;
            let value = env(name).ok_or_else(|| unset(name, at))?;
            out.push_str(&value);
            rest = after;
        } else {
            out.push('$');
            rest = &rest[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Splits `NAME}rest` into the variable name and `rest`.
fn variable(text: &str, at: Location) -> Result<(&str, &str)> {
    let malformed = || {
        Error::sql("malformed ${...} in string literal", at).with_hint(
            "write ${NAME} with NAME made of letters, digits and _, or $${ for a literal ${",
        )
    };
    let end = text.find('}').ok_or_else(malformed)?;
    let name = &text[..end];
    let mut chars = name.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(malformed());
    }
    Ok((name, &text[end + 1..]))
}

fn unset(name: &str, at: Location) -> Error {
    Error::sql(format!("environment variable {name} is not set"), at)
        .with_hint(format!("export {name}=... or remove ${{{name}}}"))
}
