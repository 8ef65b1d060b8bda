//! The transform: a CEL filter, a CEL field map and per-target CEL conditions, from an
//! inbound event to the variables of a target.
//!
//! ```text
//!  EventInput { body, headers, query, params, event }      (JSON-like values)
//!      │  to_cel (records the longest list: the widest loop an expression can run)
//!      ▼
//!  filter ──false──▶ Outcome::Filtered  (acknowledged, counted, not delivered)
//!      │ true
//!  fieldMap: name → expression ──error──▶ TransformError (rejected or dead-lettered)
//!      ▼
//!  Variables (name → JSON value), target `when` conditions
//! ```
//!
//! Cost is bounded in two ways, like the Kubernetes API server bounds CRD rules: statically
//! (source length, AST nodes, nesting of comprehensions such as `map`/`filter`/`all`) when the
//! config is loaded, and per event, where the estimate `nodes × (longest list + 1)^depth` must
//! stay under [`COST_BUDGET`] before anything runs. CEL itself has no I/O: expressions cannot
//! read files or the environment.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use cel::common::ast::{EntryExpr, Expr, IdedExpr};
use cel::objects::{Key, Map};
use cel::{Context, Program, Value};

use crate::config::TransformConfig;

/// Longest accepted expression, in bytes (the CRD's own limit).
pub const MAX_EXPRESSION_LEN: usize = 4096;
/// Most AST nodes in one expression.
pub const MAX_AST_NODES: usize = 2000;
/// Deepest nesting of comprehensions (`list.map(x, x.items.all(...))` is 2).
pub const MAX_COMPREHENSION_DEPTH: u32 = 2;
/// Most fields in a field map (the CRD's own limit).
pub const MAX_FIELDS: usize = 64;
/// Budget of the per-event cost estimate.
pub const COST_BUDGET: u128 = 50_000_000;

/// Why a transform could not be built or applied.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TransformError {
    /// An expression does not parse.
    #[error("{what}: expression does not parse: {message}")]
    Compile {
        /// `filter`, `fieldMap.<name>` or `targets.<name>.when`.
        what: String,
        /// Parser message.
        message: String,
    },
    /// An expression exceeds a static limit.
    #[error("{what}: {message}")]
    TooComplex {
        /// Which expression.
        what: String,
        /// Which limit.
        message: String,
    },
    /// The event is too large for the expressions to evaluate within budget.
    #[error("{what}: estimated cost {estimate} exceeds the budget of {COST_BUDGET}")]
    CostExceeded {
        /// Which expression.
        what: String,
        /// The estimate.
        estimate: u128,
    },
    /// Evaluation failed (missing field, wrong type, ...).
    #[error("{what}: {message}")]
    Evaluation {
        /// Which expression.
        what: String,
        /// CEL's message.
        message: String,
    },
    /// A filter or condition did not produce a bool.
    #[error("{what}: expected a bool, got {got}")]
    NotBool {
        /// Which expression.
        what: String,
        /// The type found.
        got: String,
    },
}

impl TransformError {
    /// Short category for metrics and dead-letter reasons.
    pub fn category(&self) -> &'static str {
        match self {
            TransformError::Compile { .. } | TransformError::TooComplex { .. } => {
                "invalid_expression"
            }
            TransformError::CostExceeded { .. } => "cost_exceeded",
            TransformError::Evaluation { .. } | TransformError::NotBool { .. } => "mapping_failed",
        }
    }
}

/// A compiled expression with its static cost figures.
pub struct Expression {
    what: String,
    program: Program,
    nodes: usize,
    depth: u32,
}

impl std::fmt::Debug for Expression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Expression")
            .field("what", &self.what)
            .field("nodes", &self.nodes)
            .field("depth", &self.depth)
            .finish()
    }
}

impl Expression {
    /// Compile `source`, named `what` in errors, and check the static limits.
    pub fn compile(what: &str, source: &str) -> Result<Expression, TransformError> {
        if source.len() > MAX_EXPRESSION_LEN {
            return Err(TransformError::TooComplex {
                what: what.into(),
                message: format!("expression longer than {MAX_EXPRESSION_LEN} bytes"),
            });
        }
        // The ANTLR parser recurses per nesting level; refuse pathological nesting before it.
        let mut depth = 0usize;
        let mut max_depth = 0usize;
        for b in source.bytes() {
            match b {
                b'(' | b'[' | b'{' => {
                    depth += 1;
                    max_depth = max_depth.max(depth);
                }
                b')' | b']' | b'}' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        if max_depth > 64 {
            return Err(TransformError::TooComplex {
                what: what.into(),
                message: "brackets nested deeper than 64".into(),
            });
        }
        let program = Program::compile(source)
            .map_err(|e| TransformError::Compile { what: what.into(), message: e.to_string() })?;
        let (nodes, depth) = measure(program.expression());
        if nodes > MAX_AST_NODES {
            return Err(TransformError::TooComplex {
                what: what.into(),
                message: format!("{nodes} nodes, more than {MAX_AST_NODES}"),
            });
        }
        if depth > MAX_COMPREHENSION_DEPTH {
            return Err(TransformError::TooComplex {
                what: what.into(),
                message: format!(
                    "comprehensions nested {depth} deep, more than {MAX_COMPREHENSION_DEPTH}"
                ),
            });
        }
        Ok(Expression { what: what.into(), program, nodes, depth })
    }

    /// The per-event cost estimate for inputs whose longest list (or string, for string
    /// iteration functions) has `widest` elements.
    pub fn estimate(&self, widest: usize) -> u128 {
        let width = widest as u128 + 1;
        (self.nodes as u128).saturating_mul(width.saturating_pow(self.depth))
    }

    fn check_cost(&self, input: &CelInput) -> Result<(), TransformError> {
        let estimate = self.estimate(input.widest);
        if estimate > COST_BUDGET {
            return Err(TransformError::CostExceeded { what: self.what.clone(), estimate });
        }
        Ok(())
    }

    /// Evaluate against the input.
    pub fn evaluate(&self, input: &CelInput) -> Result<Value, TransformError> {
        input.with_context(|ctx| self.evaluate_in(ctx, input))
    }

    /// Evaluate in `ctx`, a context built by [`CelInput::with_context`] of `input`.
    fn evaluate_in(&self, ctx: &Context, input: &CelInput) -> Result<Value, TransformError> {
        self.check_cost(input)?;
        self.program.execute(ctx).map_err(|e| TransformError::Evaluation {
            what: self.what.clone(),
            message: e.to_string(),
        })
    }

    /// Evaluate a condition.
    pub fn evaluate_bool(&self, input: &CelInput) -> Result<bool, TransformError> {
        input.with_context(|ctx| self.evaluate_bool_in(ctx, input))
    }

    fn evaluate_bool_in(&self, ctx: &Context, input: &CelInput) -> Result<bool, TransformError> {
        match self.evaluate_in(ctx, input)? {
            Value::Bool(b) => Ok(b),
            other => Err(TransformError::NotBool {
                what: self.what.clone(),
                got: other.type_of().to_string(),
            }),
        }
    }
}

thread_local! {
    /// CEL's standard library, built once per thread, with the case functions of the
    /// Kubernetes CEL strings library (`lowerAscii`, `upperAscii`, `trim`) that integration
    /// authors write in field maps and row rules.
    static BASE_CONTEXT: Context<'static> = {
        use cel::extractors::This;
        let mut context = Context::default();
        context.add_function("lowerAscii", |This(s): This<Arc<String>>| -> Arc<String> {
            Arc::new(s.to_ascii_lowercase())
        });
        context.add_function("upperAscii", |This(s): This<Arc<String>>| -> Arc<String> {
            Arc::new(s.to_ascii_uppercase())
        });
        context.add_function("trim", |This(s): This<Arc<String>>| -> Arc<String> {
            Arc::new(s.trim().to_string())
        });
        context
    };
}

/// Count AST nodes and the deepest nesting of comprehensions.
fn measure(expr: &IdedExpr) -> (usize, u32) {
    fn walk(e: &IdedExpr, nodes: &mut usize, depth: u32, max_depth: &mut u32) {
        *nodes += 1;
        *max_depth = (*max_depth).max(depth);
        match &e.expr {
            Expr::Call(call) => {
                if let Some(t) = &call.target {
                    walk(t, nodes, depth, max_depth);
                }
                for a in &call.args {
                    walk(a, nodes, depth, max_depth);
                }
            }
            Expr::Comprehension(c) => {
                walk(&c.iter_range, nodes, depth, max_depth);
                walk(&c.accu_init, nodes, depth, max_depth);
                walk(&c.loop_cond, nodes, depth + 1, max_depth);
                walk(&c.loop_step, nodes, depth + 1, max_depth);
                walk(&c.result, nodes, depth, max_depth);
            }
            Expr::List(l) => {
                for el in &l.elements {
                    walk(el, nodes, depth, max_depth);
                }
            }
            Expr::Map(m) => {
                for entry in &m.entries {
                    match &entry.expr {
                        EntryExpr::MapEntry(me) => {
                            walk(&me.key, nodes, depth, max_depth);
                            walk(&me.value, nodes, depth, max_depth);
                        }
                        EntryExpr::StructField(sf) => walk(&sf.value, nodes, depth, max_depth),
                    }
                }
            }
            Expr::Select(s) => walk(&s.operand, nodes, depth, max_depth),
            Expr::Struct(s) => {
                for entry in &s.entries {
                    match &entry.expr {
                        EntryExpr::MapEntry(me) => {
                            walk(&me.key, nodes, depth, max_depth);
                            walk(&me.value, nodes, depth, max_depth);
                        }
                        EntryExpr::StructField(sf) => walk(&sf.value, nodes, depth, max_depth),
                    }
                }
            }
            Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => {}
        }
    }
    let mut nodes = 0;
    let mut max_depth = 0;
    walk(expr, &mut nodes, 0, &mut max_depth);
    (nodes, max_depth)
}

/// The variables an expression sees, converted once per event.
#[derive(Clone, Debug, Default)]
pub struct CelInput {
    variables: Vec<(&'static str, Value)>,
    widest: usize,
}

impl CelInput {
    /// Build from named JSON values (`body`, `headers`, `query`, `params`, `event`).
    pub fn new(values: &[(&'static str, &serde_json::Value)]) -> CelInput {
        let mut widest = 0;
        let variables = values.iter().map(|(name, v)| (*name, to_cel(v, &mut widest))).collect();
        CelInput { variables, widest }
    }

    /// Longest list or string in the input.
    pub fn widest(&self) -> usize {
        self.widest
    }

    /// Run `f` with a context holding these variables. The standard functions are registered
    /// once per thread; the event's variables are bound here once, in a child scope, for
    /// every expression `f` evaluates (filter and field map share one).
    fn with_context<T>(&self, f: impl FnOnce(&Context) -> T) -> T {
        BASE_CONTEXT.with(|base| {
            let mut ctx = base.new_inner_scope();
            for (name, value) in &self.variables {
                ctx.add_variable_from_value(*name, value.clone());
            }
            f(&ctx)
        })
    }
}

fn to_cel(v: &serde_json::Value, widest: &mut usize) -> Value {
    match v {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::Int(i)
            } else if let Some(u) = n.as_u64() {
                Value::UInt(u)
            } else {
                Value::Float(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        serde_json::Value::String(s) => {
            *widest = (*widest).max(s.len());
            Value::String(Arc::new(s.clone()))
        }
        serde_json::Value::Array(items) => {
            *widest = (*widest).max(items.len());
            Value::List(Arc::new(items.iter().map(|i| to_cel(i, widest)).collect()))
        }
        serde_json::Value::Object(fields) => {
            *widest = (*widest).max(fields.len());
            // Built with CEL's own keys: a `HashMap<String, Value>` turned into a CEL map is
            // hashed and allocated a second time.
            let map: HashMap<Key, Value> = fields
                .iter()
                .map(|(k, v)| (Key::String(Arc::new(k.clone())), to_cel(v, widest)))
                .collect();
            Value::Map(Map { map: Arc::new(map) })
        }
    }
}

/// A CEL value as JSON (maps and lists as JSON structures, bytes as base64, timestamps as
/// RFC 3339).
pub fn cel_to_json(value: &Value) -> Result<serde_json::Value, String> {
    value.json().map_err(|e| format!("value cannot be represented as JSON: {e:?}"))
}

/// Variables produced by the field map.
pub type Variables = BTreeMap<String, serde_json::Value>;

/// What the transform decided for one event.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The filter dropped it.
    Filtered,
    /// Mapped variables.
    Mapped(Variables),
}

/// A compiled transform: filter, field map and per-target conditions.
#[derive(Debug, Default)]
pub struct Transform {
    filter: Option<Expression>,
    field_map: Vec<(String, Expression)>,
    target_when: BTreeMap<String, Expression>,
}

/// The input variables an event offers to expressions.
pub const INPUT_VARIABLES: [&str; 5] = ["body", "headers", "query", "params", "event"];

impl Transform {
    /// Compile the transform and the targets' `when` conditions.
    pub fn compile<'a>(
        config: &TransformConfig,
        target_conditions: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
    ) -> Result<Transform, TransformError> {
        if config.field_map.len() > MAX_FIELDS {
            return Err(TransformError::TooComplex {
                what: "fieldMap".into(),
                message: format!("more than {MAX_FIELDS} fields"),
            });
        }
        let filter =
            config.filter.as_deref().map(|f| Expression::compile("filter", f)).transpose()?;
        let field_map = config
            .field_map
            .iter()
            .map(|(name, src)| {
                Ok((name.clone(), Expression::compile(&format!("fieldMap.{name}"), src)?))
            })
            .collect::<Result<_, TransformError>>()?;
        let mut target_when = BTreeMap::new();
        for (name, when) in target_conditions {
            if let Some(w) = when {
                target_when.insert(
                    name.to_string(),
                    Expression::compile(&format!("targets.{name}.when"), w)?,
                );
            }
        }
        Ok(Transform { filter, field_map, target_when })
    }

    /// Apply filter and field map. Without a field map, the variables are the top-level
    /// fields of a JSON object body (so a plain pass-through needs no configuration), plus
    /// `body` holding the whole body.
    pub fn apply(
        &self,
        input: &CelInput,
        body: &serde_json::Value,
    ) -> Result<Outcome, TransformError> {
        input.with_context(|ctx| self.apply_in(ctx, input, body))
    }

    fn apply_in(
        &self,
        ctx: &Context,
        input: &CelInput,
        body: &serde_json::Value,
    ) -> Result<Outcome, TransformError> {
        if let Some(filter) = &self.filter
            && !filter.evaluate_bool_in(ctx, input)?
        {
            return Ok(Outcome::Filtered);
        }
        let mut vars = Variables::new();
        if self.field_map.is_empty() {
            if let serde_json::Value::Object(fields) = body {
                for (k, v) in fields {
                    vars.insert(k.clone(), v.clone());
                }
            }
            vars.insert("body".into(), body.clone());
            return Ok(Outcome::Mapped(vars));
        }
        for (name, expr) in &self.field_map {
            let value = expr.evaluate_in(ctx, input)?;
            let json = cel_to_json(&value).map_err(|message| TransformError::Evaluation {
                what: expr.what.clone(),
                message,
            })?;
            vars.insert(name.clone(), json);
        }
        Ok(Outcome::Mapped(vars))
    }

    /// Which of [`INPUT_VARIABLES`] some expression reads: the others need not be converted
    /// for each event.
    pub fn referenced_inputs(&self) -> Vec<&'static str> {
        let expressions: Vec<&Expression> = self
            .filter
            .iter()
            .chain(self.field_map.iter().map(|(_, e)| e))
            .chain(self.target_when.values())
            .collect();
        INPUT_VARIABLES
            .into_iter()
            .filter(|name| expressions.iter().any(|e| e.program.references().has_variable(name)))
            .collect()
    }

    /// Whether target `name` takes this event (its `when`, default true).
    pub fn target_accepts(&self, name: &str, input: &CelInput) -> Result<bool, TransformError> {
        match self.target_when.get(name) {
            Some(expr) => expr.evaluate_bool(input),
            None => Ok(true),
        }
    }
}

/// Render a variable as the text a template substitutes: strings as they are, other values
/// as JSON.
pub fn variable_text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn input(body: serde_json::Value) -> (CelInput, serde_json::Value) {
        let headers = json!({"x-team": "noc"});
        (CelInput::new(&[("body", &body), ("headers", &headers)]), body)
    }

    fn transform(filter: Option<&str>, fields: &[(&str, &str)]) -> Transform {
        let config = TransformConfig {
            filter: filter.map(str::to_string),
            field_map: fields.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            ..Default::default()
        };
        Transform::compile(&config, [("sink", Some("body.severity != 'debug'"))]).unwrap()
    }

    #[test]
    fn filter_and_field_map() {
        let t = transform(
            Some("body.severity in ['critical', 'warning']"),
            &[
                ("title", "body.alert.title"),
                ("team", "headers['x-team']"),
                ("n", "size(body.tags)"),
            ],
        );
        let (i, b) =
            input(json!({"severity": "critical", "alert": {"title": "disk"}, "tags": [1, 2]}));
        let Outcome::Mapped(vars) = t.apply(&i, &b).unwrap() else { panic!("filtered") };
        assert_eq!(vars["title"], json!("disk"));
        assert_eq!(vars["team"], json!("noc"));
        assert_eq!(vars["n"], json!(2));
        let (i, b) = input(json!({"severity": "info"}));
        assert_eq!(t.apply(&i, &b).unwrap(), Outcome::Filtered);
    }

    #[test]
    fn a_missing_field_is_a_mapping_error_with_its_name() {
        let t = transform(None, &[("title", "body.alert.title")]);
        let (i, b) = input(json!({"severity": "critical"}));
        let err = t.apply(&i, &b).unwrap_err();
        assert_eq!(err.category(), "mapping_failed");
        assert!(err.to_string().starts_with("fieldMap.title"), "{err}");
    }

    #[test]
    fn a_non_bool_filter_is_refused() {
        let t = transform(Some("body.severity"), &[]);
        let (i, b) = input(json!({"severity": "critical"}));
        assert!(matches!(t.apply(&i, &b), Err(TransformError::NotBool { .. })));
    }

    #[test]
    fn target_conditions() {
        let t = transform(None, &[]);
        let (i, _) = input(json!({"severity": "debug"}));
        assert!(!t.target_accepts("sink", &i).unwrap());
        assert!(t.target_accepts("other", &i).unwrap());
    }

    #[test]
    fn static_limits_refuse_deep_comprehensions_and_long_sources() {
        let deep = "body.a.all(x, body.a.all(y, body.a.all(z, true)))";
        let err = Expression::compile("filter", deep).unwrap_err();
        assert_eq!(err.category(), "invalid_expression");
        let long = format!("'{}' == ''", "a".repeat(MAX_EXPRESSION_LEN));
        assert!(Expression::compile("filter", &long).is_err());
        let nested = format!("{}1{}", "(".repeat(100), ")".repeat(100));
        assert!(Expression::compile("filter", &nested).is_err());
        assert!(Expression::compile("filter", "body.a.all(x, ").is_err());
    }

    #[test]
    fn cost_is_checked_against_the_event_before_evaluation() {
        let quadratic =
            Expression::compile("filter", "body.a.all(x, body.a.exists(y, y == x))").unwrap();
        let small = CelInput::new(&[("body", &json!({"a": [1, 2, 3]}))]);
        assert!(quadratic.evaluate_bool(&small).unwrap());
        let big: Vec<u32> = (0..20_000).collect();
        let large = CelInput::new(&[("body", &json!({"a": big}))]);
        let err = quadratic.evaluate_bool(&large).unwrap_err();
        assert_eq!(err.category(), "cost_exceeded");
        // A linear expression over the same input is fine.
        let linear = Expression::compile("filter", "body.a.exists(x, x == 19999)").unwrap();
        assert!(linear.evaluate_bool(&large).unwrap());
    }

    #[test]
    fn kubernetes_string_functions_are_available() {
        let t = transform(
            None,
            &[
                ("lower", "body.e.lowerAscii()"),
                ("upper", "body.e.upperAscii()"),
                ("t", "body.p.trim()"),
            ],
        );
        let (i, b) = input(json!({"e": "Ada@ACME.example", "p": "  x "}));
        let Outcome::Mapped(vars) = t.apply(&i, &b).unwrap() else { panic!() };
        assert_eq!(vars["lower"], json!("ada@acme.example"));
        assert_eq!(vars["upper"], json!("ADA@ACME.EXAMPLE"));
        assert_eq!(vars["t"], json!("x"));
    }

    #[test]
    fn without_a_field_map_top_level_fields_pass_through() {
        let t = transform(None, &[]);
        let (i, b) = input(json!({"id": 7, "name": "x"}));
        let Outcome::Mapped(vars) = t.apply(&i, &b).unwrap() else { panic!() };
        assert_eq!(vars["id"], json!(7));
        assert_eq!(vars["body"], json!({"id": 7, "name": "x"}));
        assert_eq!(variable_text(&vars["id"]), "7");
    }
}
