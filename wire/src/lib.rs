//! Wire model of the Mistral Agents & Conversations API, an incremental SSE codec and
//! streamed-entry assembly. Pure data and parsing: this crate does no I/O.
//!
//! - [`types`]: serde types for agents, conversations, entries, content chunks, tools,
//!   usage, errors and streaming events. Parsing then serializing any payload gives back an
//!   equal [`serde_json::Value`]: unknown keys are kept (`extra` on every struct), absent
//!   and `null` stay distinct ([`Maybe`]), unknown `type`s are kept (`Other` variants) and
//!   integers stay integers.
//! - [`sse`]: [`SseDecoder`] (chunks split anywhere) and the encoders.
//! - [`assemble`]: [`EntryAssembler`] rebuilds a streamed turn's entries.
//! - [`har`]: the HAR 1.2 model `agentcap export --format har` writes.
//! - [`trace_context`]: the W3C `traceparent` header, parsed and formatted.
//! - [`vocab`]: the shared vocabulary: [`Operation`] (recorded name, OpenAPI id, turn or not), agentcap's
//!   header names, the secret headers and the simulated-upstream label.
//!
//! Comparing JSON: with the `preserve_order` feature a [`serde_json::Map`] keeps insertion
//! order, but its equality is still order-insensitive (it compares like the underlying
//! `IndexMap`: same length and equal value for every key). A round trip may reorder keys
//! (known fields come out in declaration order, `type` first, unknown keys last), so
//! compare parsed values with `==`, not serialized text.
//!
//! ```
//! use agentcap_wire::{ConversationEvent, EntryAssembler, SseDecoder};
//!
//! let wire = b"event: conversation.response.started\n\
//! data: {\"type\":\"conversation.response.started\",\"conversation_id\":\"conv_1\"}\n\n\
//! event: message.output.delta\n\
//! data: {\"type\":\"message.output.delta\",\"id\":\"msg_1\",\"content\":\"Hi\"}\n\n";
//! let mut decoder = SseDecoder::new();
//! let mut assembler = EntryAssembler::new();
//! for chunk in wire.chunks(7) {
//!     for ev in decoder.push(chunk)? {
//!         assembler.push(&ConversationEvent::from_sse(&ev)?);
//!     }
//! }
//! let turn = assembler.finish();
//! assert_eq!(turn.conversation_id.as_deref(), Some("conv_1"));
//! assert_eq!(turn.outputs[0].to_value()["content"], "Hi");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]

#[macro_use]
mod macros;

pub mod assemble;
pub mod exposition;
pub mod har;
pub mod maybe;
pub mod sse;
pub mod trace_context;
pub mod types;
pub mod vocab;

pub use assemble::{AssembledTurn, EntryAssembler, assemble_turn, comparable, same_outputs};
pub use maybe::Maybe;
pub use sse::{
    DEFAULT_MAX_EVENT_SIZE, SseDecoder, SseError, SseEvent, encode_conversation_event, encode_data,
    encode_event, encode_sse_event,
};
pub use types::agents::{
    AGENT_OBJECT, Agent, AgentAliasResponse, AgentListPage, CreateAgentRequest, RequestSource,
    UpdateAgentRequest,
};
pub use types::chunks::{
    ContentChunk, DeltaContent, DocumentUrlChunk, ImageDetail, ImageUrl, ImageUrlChunk,
    ImageUrlObject, MessageContent, ReferenceChunk, ReferenceId, TextChunk, ThinkChunk,
    ToolFileChunk, ToolReferenceChunk,
};
pub use types::completion::{
    CompletionArgs, GuardrailConfig, JsonSchema, ModerationAction, ModerationConfig, Prediction,
    ReasoningEffort, ResponseFormat, ResponseFormatType, Stop, ToolChoice,
};
pub use types::conversations::{
    AgentConversation, AgentVersion, CONVERSATION_HISTORY_OBJECT, CONVERSATION_MESSAGES_OBJECT,
    CONVERSATION_OBJECT, CONVERSATION_RESPONSE_OBJECT, Confirmation, Conversation,
    ConversationAppendRequest, ConversationHistory, ConversationMessages, ConversationRequest,
    ConversationResponse, ConversationRestartRequest, HandoffExecution, ModelConversation,
    ToolCallConfirmation,
};
pub use types::entries::{
    AgentHandoffEntry, ConfirmationStatus, ENTRY_OBJECT, Entry, FunctionArguments,
    FunctionCallEntry, FunctionResultEntry, Inputs, MessageInputEntry, MessageOutputEntry, Role,
    ToolExecutionEntry,
};
pub use types::errors::{
    ApiError, ErrorBody, ErrorCode, ErrorMessage, HttpValidationError, LocSegment,
    ValidationErrorItem,
};
pub use types::events::{
    AgentHandoffDoneEvent, AgentHandoffStartedEvent, ConversationEvent, FunctionCallEvent,
    MessageOutputEvent, ResponseDoneEvent, ResponseErrorEvent, ResponseStartedEvent,
    ToolExecutionDeltaEvent, ToolExecutionDoneEvent, ToolExecutionStartedEvent,
};
pub use types::tools::{
    BuiltInTool, ConnectorAuthorization, ConnectorTool, DocumentLibraryTool, FunctionDefinition,
    FunctionTool, Tool, ToolConfiguration,
};
pub use types::usage::ConversationUsageInfo;
pub use vocab::{Operation, SIMULATED_LABEL};
