//! The statement parser: in the style of DataFusion's `DFParser`, it peeks at the first words of
//! each statement, parses misql's own statements itself on top of sqlparser's `Parser`, and hands
//! everything else to sqlparser. All positions are in the whole input, 1-based.

use sqlparser::ast::{Ident, ObjectName};
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::{self, Token, TokenWithSpan, Tokenizer};

use super::Parsed;
use super::statement::{ExplainSync, Statement};
use crate::{Error, Location, Result};

/// sqlparser's generic dialect: `::` casts, double-quoted identifiers, `--` comments.
pub(crate) static DIALECT: GenericDialect = GenericDialect;

/// Splits `source` into tokens with their positions.
pub(crate) fn tokenize(source: &str) -> Result<Vec<TokenWithSpan>> {
    Tokenizer::new(&DIALECT, source)
        .tokenize_with_location()
        .map_err(|error| Error::sql(sentence(&error.message), location(error.location)))
}

/// Parses every statement in `tokens`, which were made from `source`.
pub(crate) fn parse_tokens(source: &str, tokens: Vec<TokenWithSpan>) -> Result<Vec<Parsed>> {
    let mut parser = StatementParser::new(source, tokens);
    let mut parsed = Vec::new();
    loop {
        while parser.parser.consume_token(&Token::SemiColon) {}
        let start = parser.parser.peek_token_ref();
        if start.token == Token::EOF {
            return Ok(parsed);
        }
        let start = start.span.start;
        let statement = parser.parse_statement()?;
        let text = parser.text_from(start);
        parser.expect_statement_end()?;
        parsed.push(Parsed { statement, location: location(start), text });
    }
}

/// A sqlparser position as a misql [`Location`].
pub(crate) fn location(at: tokenizer::Location) -> Location {
    Location::new(at.line, at.column)
}

/// The parser state: sqlparser's parser over the whole input, and the input for slicing text.
pub(crate) struct StatementParser<'a> {
    /// sqlparser's parser, positioned at the next token.
    pub(crate) parser: Parser<'static>,
    source: &'a str,
    /// The byte offset where each line starts.
    line_starts: Vec<usize>,
    /// Just after the last token: where "end of input" is reported.
    end: Location,
}

impl<'a> StatementParser<'a> {
    fn new(source: &'a str, tokens: Vec<TokenWithSpan>) -> Self {
        let end = tokens
            .iter()
            .rev()
            .find(|token| !matches!(token.token, Token::Whitespace(_)))
            .map_or(Location::new(1, 1), |token| location(token.span.end));
        let line_starts =
            std::iter::once(0).chain(source.match_indices('\n').map(|(i, _)| i + 1)).collect();
        let parser = Parser::new(&DIALECT).with_tokens_with_locations(tokens);
        Self { parser, source, line_starts, end }
    }

    fn parse_statement(&mut self) -> Result<Statement> {
        let words = self.peek_words::<5>();
        let statement = match words.each_ref().map(String::as_str) {
            ["ATTACH", ..] => Statement::Attach(self.parse_attach()?),
            ["CREATE", "SYNC", ..] | ["CREATE", "OR", "REPLACE", "SYNC", ..] => {
                self.parser.next_token();
                Statement::CreateSync(self.parse_create_sync()?)
            }
            ["DROP", "SYNC", ..] => self.parse_drop_sync()?,
            ["START", "SYNC", ..] => Statement::StartSync { name: self.parse_sync_command()? },
            ["STOP", ..] => Statement::StopSync { name: self.parse_sync_command()? },
            ["CHECK", "SYNC", ..] => Statement::CheckSync { name: self.parse_sync_command()? },
            ["REFRESH", "SYNC", ..] => Statement::RefreshSync { name: self.parse_sync_command()? },
            ["SHOW", "SYNCS", ..] => self.skip(2, Statement::ShowSyncs),
            ["SHOW", "SYNC", ..] => self.parse_show_sync_status()?,
            ["SHOW", "DATABASES" | "COLLECTIONS" | "TABLES", ..] => self.parse_show()?,
            ["EXPLAIN", "SYNC", ..] => {
                self.skip(2, ());
                let name = self.parse_ident("a sync name after EXPLAIN SYNC")?;
                Statement::ExplainSync(ExplainSync::Named(name))
            }
            ["EXPLAIN", "CREATE", "SYNC", ..] | ["EXPLAIN", "CREATE", "OR", "REPLACE", "SYNC"] => {
                self.skip(2, ());
                Statement::ExplainSync(ExplainSync::Create(Box::new(self.parse_create_sync()?)))
            }
            ["OPTIMIZE", ..] => Statement::Optimize(self.parse_optimize()?),
            ["VACUUM", ..] => Statement::Vacuum(self.parse_vacuum()?),
            ["DESCRIBE" | "DESC", ..] => {
                self.skip(1, ());
                let what = "a collection or table name after DESCRIBE";
                Statement::Describe { name: self.parse_object_name(what)? }
            }
            _ => self.parse_sql()?,
        };
        Ok(statement)
    }

    fn parse_sql(&mut self) -> Result<Statement> {
        match self.parser.parse_statement() {
            Ok(statement) => Ok(Statement::Sql(Box::new(statement))),
            Err(error) => {
                let error = self.convert(error);
                if error.to_string().starts_with("expected an SQL statement") {
                    return Err(error.with_hint(
                        "misql statements: ATTACH, CREATE SYNC, DROP SYNC, START SYNC, STOP SYNC, REFRESH SYNC, CHECK SYNC, \
                         SHOW SYNCS, SHOW SYNC STATUS, EXPLAIN SYNC, OPTIMIZE, VACUUM, SHOW DATABASES, \
                         SHOW COLLECTIONS, SHOW TABLES, DESCRIBE; or any SQL query",
                    ));
                }
                Err(error)
            }
        }
    }

    /// `DROP SYNC [IF EXISTS] name [PURGE]`
    fn parse_drop_sync(&mut self) -> Result<Statement> {
        self.skip(2, ());
        let if_exists = self.parse_words(&["IF", "EXISTS"]);
        let name = self.parse_ident("a sync name after DROP SYNC")?;
        let purge = self.parse_words(&["PURGE"]);
        Ok(Statement::DropSync { name, purge, if_exists })
    }

    /// `START SYNC name`, `STOP SYNC name`, `REFRESH SYNC name` or `CHECK SYNC name`: the name.
    fn parse_sync_command(&mut self) -> Result<Ident> {
        let command = self.peek_words::<1>()[0].clone();
        self.skip(1, ());
        self.expect_word("SYNC", &format!("after {command}"))?;
        self.parse_ident(&format!("a sync name after {command} SYNC"))
    }

    /// `SHOW SYNC STATUS [name]`
    fn parse_show_sync_status(&mut self) -> Result<Statement> {
        self.skip(2, ());
        if !self.parse_words(&["STATUS"]) {
            return Err(self
                .expected("STATUS after SHOW SYNC")
                .with_hint("SHOW SYNCS lists the syncs; SHOW SYNC STATUS [name] shows progress"));
        }
        let name = match self.parser.peek_token_ref().token {
            Token::Word(_) => Some(self.parse_ident("a sync name")?),
            _ => None,
        };
        Ok(Statement::ShowSyncStatus { name })
    }

    /// `SHOW DATABASES [FROM catalog]`, `SHOW COLLECTIONS [FROM catalog.db]`,
    /// `SHOW TABLES [FROM catalog.namespace]`
    fn parse_show(&mut self) -> Result<Statement> {
        let what = self.peek_words::<2>()[1].clone();
        self.skip(2, ());
        let from_keyword = self.parse_words(&["FROM"]);
        let statement = match what.as_str() {
            "DATABASES" => {
                let from = if from_keyword {
                    Some(self.parse_ident("a catalog after FROM")?)
                } else {
                    None
                };
                Statement::ShowDatabases { from }
            }
            "COLLECTIONS" => {
                let from = self.parse_from_name(from_keyword, "catalog.database after FROM")?;
                Statement::ShowCollections { from }
            }
            _ => {
                let from = self.parse_from_name(from_keyword, "catalog.namespace after FROM")?;
                Statement::ShowTables { from }
            }
        };
        Ok(statement)
    }

    fn parse_from_name(&mut self, present: bool, what: &str) -> Result<Option<ObjectName>> {
        if present { self.parse_object_name(what).map(Some) } else { Ok(None) }
    }

    /// After a statement: `;` or the end of the input.
    fn expect_statement_end(&mut self) -> Result<()> {
        match self.parser.peek_token_ref().token {
            Token::SemiColon | Token::EOF => Ok(()),
            _ => Err(self.expected("end of statement").with_hint("separate statements with ;")),
        }
    }

    // ---- token helpers, shared with the CREATE SYNC and ATTACH parsers ----

    /// The next `N` tokens as upper-cased words; "" for anything but an unquoted word.
    pub(crate) fn peek_words<const N: usize>(&self) -> [String; N] {
        std::array::from_fn(|n| match &self.parser.peek_nth_token_ref(n).token {
            Token::Word(word) if word.quote_style.is_none() => word.value.to_ascii_uppercase(),
            _ => String::new(),
        })
    }

    /// Consumes the words if they come next (case-insensitively), else consumes nothing.
    pub(crate) fn parse_words(&mut self, words: &[&str]) -> bool {
        let next = self.peek_words::<5>();
        let matches = words.iter().zip(&next).all(|(word, next)| word == next);
        if matches {
            self.skip(words.len(), ());
        }
        matches
    }

    /// Consumes `word`, or fails with "expected WORD context, found ...".
    pub(crate) fn expect_word(&mut self, word: &str, context: &str) -> Result<()> {
        if self.parse_words(&[word]) {
            Ok(())
        } else {
            Err(self.expected(&format!("{word} {context}")))
        }
    }

    /// Consumes `token`, or fails with "expected what, found ...".
    pub(crate) fn expect_token(&mut self, token: &Token, what: &str) -> Result<()> {
        if self.parser.consume_token(token) { Ok(()) } else { Err(self.expected(what)) }
    }

    /// Skips `n` tokens and returns `value`.
    pub(crate) fn skip<T>(&mut self, n: usize, value: T) -> T {
        for _ in 0..n {
            self.parser.advance_token();
        }
        value
    }

    /// A single identifier; `what` names it in the error.
    pub(crate) fn parse_ident(&mut self, what: &str) -> Result<Ident> {
        let token = self.parser.peek_token();
        match token.token {
            Token::Word(word) => {
                self.parser.advance_token();
                Ok(Ident { value: word.value, quote_style: word.quote_style, span: token.span })
            }
            _ => Err(self.expected(what)),
        }
    }

    /// A dotted name; `what` names it in the error.
    pub(crate) fn parse_object_name(&mut self, what: &str) -> Result<ObjectName> {
        if !matches!(self.parser.peek_token_ref().token, Token::Word(_)) {
            return Err(self.expected(what));
        }
        self.parser.parse_object_name(false).map_err(|error| self.convert(error))
    }

    /// "expected what, found <next token>" at the next token.
    pub(crate) fn expected(&self, what: &str) -> Error {
        let found = self.parser.peek_token_ref();
        let shown = match found.token {
            Token::EOF => "end of input".to_string(),
            ref token => token.to_string(),
        };
        Error::sql(format!("expected {what}, found {shown}"), self.location_of(found))
    }

    /// Where the next token starts (the end of input when there is none).
    pub(crate) fn peek_location(&self) -> Location {
        self.location_of(self.parser.peek_token_ref())
    }

    /// Where the last consumed token starts.
    pub(crate) fn location_of_current(&self) -> Location {
        self.location_of(self.parser.get_current_token())
    }

    fn location_of(&self, token: &TokenWithSpan) -> Location {
        if token.span.start.line == 0 { self.end } else { location(token.span.start) }
    }

    /// The last token before the current (last consumed) one, skipping whitespace.
    pub(crate) fn token_before_current(&self) -> &Token {
        let current = self.parser.get_current_index();
        (0..current)
            .rev()
            .map(|index| &self.parser.token_at(index).token)
            .find(|token| !matches!(token, Token::Whitespace(_)))
            .unwrap_or(&Token::EOF)
    }

    /// The source text from `start` to the end of the last token consumed.
    pub(crate) fn text_from(&self, start: tokenizer::Location) -> String {
        let mut index = self.parser.get_current_index() + 1;
        let end = loop {
            if index == 0 {
                break start;
            }
            index -= 1;
            let token = self.parser.token_at(index);
            if !matches!(token.token, Token::Whitespace(_) | Token::EOF) {
                break token.span.end;
            }
        };
        let text = self.source.get(self.offset(start)..self.offset(end)).unwrap_or_default();
        text.trim_end().trim_end_matches(';').trim_end().to_string()
    }

    /// The byte offset of a 1-based line and (character) column.
    fn offset(&self, at: tokenizer::Location) -> usize {
        let Some(&line_start) = usize::try_from(at.line.saturating_sub(1))
            .ok()
            .and_then(|line| self.line_starts.get(line))
        else {
            return self.source.len();
        };
        let line = &self.source[line_start..];
        let column = usize::try_from(at.column.saturating_sub(1)).unwrap_or(usize::MAX);
        line_start + line.char_indices().nth(column).map_or(line.len(), |(i, _)| i)
    }

    /// A sqlparser error as a misql error: its "at Line: L, Column: C" becomes the location.
    pub(crate) fn convert(&self, error: ParserError) -> Error {
        let text = match error {
            ParserError::TokenizerError(text) | ParserError::ParserError(text) => text,
            ParserError::RecursionLimitExceeded => "statement nested too deeply".to_string(),
        };
        let (message, at) = match text.rfind(" at Line: ") {
            Some(i) => (&text[..i], parse_location(&text[i + " at Line: ".len()..])),
            None => (text.as_str(), None),
        };
        let at = at.unwrap_or_else(|| self.peek_location());
        let message = match message.strip_prefix("Expected: ") {
            Some(rest) => format!("expected {}", rest.replacen(", found: ", ", found ", 1)),
            None => sentence(message),
        };
        let message = match message.strip_suffix("found EOF") {
            Some(rest) => format!("{rest}found end of input"),
            None => message,
        };
        Error::sql(message, at)
    }
}

/// `"3, Column: 7"` → line 3, column 7.
fn parse_location(text: &str) -> Option<Location> {
    let (line, column) = text.split_once(", Column: ")?;
    Some(Location::new(line.trim().parse().ok()?, column.trim().parse().ok()?))
}

/// A message with a lower-case first letter, like the rest of misql's messages.
fn sentence(message: &str) -> String {
    let mut chars = message.chars();
    chars.next().map_or_else(String::new, |first| first.to_lowercase().chain(chars).collect())
}
