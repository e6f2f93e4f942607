import IMAPCodec
import NIOCore

/// Identifies one logical command for the lifetime of the connection. An IDLE
/// that is re-issued keeps its id while getting new tags.
public struct CommandID: Hashable, Sendable, CustomStringConvertible {
    public let rawValue: Int
    public init(_ rawValue: Int) { self.rawValue = rawValue }
    public var description: String { "#\(rawValue)" }
}

/// What a command is, as far as routing server responses is concerned. IMAP
/// untagged responses carry no tag, so with several commands in flight each
/// one is given to the oldest command that asked for that kind of data.
enum CommandRole: Sendable, Hashable {
    case generic
    case capability
    case authenticate
    case login
    case startTLS
    case compress
    case enable
    case id
    case namespace
    case list
    case status
    case select
    case search(tag: Tag)
    /// UID FETCH: owns FETCH responses whose UID is in the set.
    case fetch(UIDSet)
    /// UID STORE (not .SILENT or with UNCHANGEDSINCE): owns FETCH responses for its UIDs.
    case store(UIDSet)
    /// UID MOVE: RFC 6851 §4.3 sends COPYUID in an untagged OK before the
    /// expunges, so the untagged condition belongs to the command.
    case move
    case idle
    case logout

    /// After these complete the wire changes (TLS / deflate), so nothing queued behind
    /// them may be written until the connection has rebuilt its pipeline and resumes.
    var pausesWritesAfterCompletion: Bool { self == .startTLS || self == .compress }

    /// These stay at the head of the send queue until tagged: nothing may be sent
    /// while a SASL exchange or a TLS/deflate switch is pending.
    var blocksQueueUntilTagged: Bool {
        switch self {
        case .authenticate, .startTLS, .compress, .login, .logout: return true
        default: return false
        }
    }

    func accepts(_ response: UntaggedResponse) -> Bool {
        switch (self, response) {
        case (.capability, .capability), (.authenticate, .capability), (.login, .capability): return true
        case (.enable, .enabled), (.id, .id), (.namespace, .namespace): return true
        case (.list, .list), (.list, .lsub), (.list, .status), (.status, .status): return true
        case (.search, .search): return true
        case (.search(let tag), .esearch(let e)): return e.correlator == nil || e.correlator == tag
        case (.select, .flags), (.select, .exists), (.select, .recent), (.select, .vanished(_, earlier: true)),
            (.select, .condition): return true
        case (.fetch, .vanished(_, earlier: true)): return true
        case (.move, .condition(let condition)):
            if case .copyUID? = condition.text.code { return true }
            return false
        default: return false
        }
    }

    var fetchUIDs: UIDSet? {
        switch self {
        case .fetch(let s), .store(let s): return s
        default: return nil
        }
    }
}

/// The sans-I/O core of a connection: events in (bytes to send, parsed server
/// responses), actions out (writes, deliveries, completions). It owns the send
/// queue — a command with a synchronizing literal, an APPEND body or an IDLE
/// holds back everything behind it — and routes tagged and untagged responses
/// to pipelined commands. No sockets, clocks or tasks, so every rule can be
/// tested with tables of events and expected actions.
struct ClientStateMachine {
    enum Action: Equatable {
        case write(ByteBuffer)
        /// The command's APPEND body `index` (`size` bytes) must be written now;
        /// call `appendBodyWritten` afterwards.
        case streamAppendBody(CommandID, index: Int, size: UInt64)
        case greeting(UntaggedCondition)
        /// Untagged data for a command (nil: nobody asked → unsolicited).
        case untagged(CommandID?, UntaggedResponse)
        case fetch(CommandID?, FetchEvent)
        /// IDLE has been accepted by the server (`+ idling`).
        case idleStarted(CommandID)
        case completed(CommandID, TaggedResponse)
        /// A server BYE. Commands still outstanding fail when the socket closes.
        case bye(UntaggedCondition)
        /// The server broke the protocol; the connection must be closed.
        case protocolViolation(String)
    }

    private enum SendState: Equatable {
        case ready
        case waitingForContinuation
        case streamingBody
        /// All chunks are written; the command stays at the head until tagged.
        case awaitingTagged
        case idling(entered: Bool, doneRequested: Bool)
    }

    private struct Outgoing {
        var id: CommandID
        var role: CommandRole
        var chunks: ArraySlice<CommandChunk>
        var state: SendState
        /// The server answered while the body was still being written.
        var answered = false
    }

    private struct InFlight {
        var id: CommandID
        var tag: Tag
        var role: CommandRole
    }

    private enum FetchOwner {
        case undetermined(buffered: [FetchEvent])
        case owner(CommandID?)
    }

    private(set) var greetingReceived = false
    private var tagCounter = 0
    private var sendQueue: [Outgoing] = []
    private var inFlight: [InFlight] = []
    private var fetchOwner: FetchOwner?
    /// Set after STARTTLS/COMPRESS complete; the connection calls `resumeWrites`.
    private(set) var writesPaused = false

    var hasOutstandingCommands: Bool { !inFlight.isEmpty }
    var outstandingCommands: [CommandID] { inFlight.map(\.id) }

    /// Tags are `A1`, `A2`, …: short, unique per connection, easy to grep in traces.
    mutating func nextTag() -> Tag {
        tagCounter += 1
        return "A\(tagCounter)"
    }

    func tag(of id: CommandID) -> Tag? { inFlight.first { $0.id == id }?.tag }

    /// True when IDLE is active (entered and not being ended).
    func isIdling(_ id: CommandID) -> Bool {
        if let head = sendQueue.first, head.id == id, case .idling(true, false) = head.state { return true }
        return false
    }

    mutating func enqueue(id: CommandID, tag: Tag, role: CommandRole, chunks: [CommandChunk]) -> [Action] {
        inFlight.append(InFlight(id: id, tag: tag, role: role))
        sendQueue.append(Outgoing(id: id, role: role, chunks: chunks[...], state: .ready))
        var actions: [Action] = []
        if sendQueue.count == 1 { pump(into: &actions) }
        return actions
    }

    mutating func appendBodyWritten(_ id: CommandID) -> [Action] {
        guard let head = sendQueue.first, head.id == id, head.state == .streamingBody else { return [] }
        sendQueue[0].state = .ready
        var actions: [Action] = []
        pump(into: &actions)
        return actions
    }

    /// Ends IDLE: `DONE` is written as soon as the server has confirmed the IDLE.
    mutating func endIdle(_ id: CommandID) -> [Action] {
        guard let head = sendQueue.first, head.id == id, case .idling(let entered, _) = head.state else { return [] }
        if !entered {
            sendQueue[0].state = .idling(entered: false, doneRequested: true)
            return []
        }
        var actions: [Action] = [.write(Self.doneLine)]
        sendQueue.removeFirst()
        pump(into: &actions)
        return actions
    }

    mutating func resumeWrites() -> [Action] {
        writesPaused = false
        var actions: [Action] = []
        pump(into: &actions)
        return actions
    }

    static let doneLine = ByteBuffer(string: "DONE\r\n")

    mutating func receive(_ event: ResponseEvent) -> [Action] {
        var actions: [Action] = []
        switch event {
        case .greeting(let condition):
            greetingReceived = true
            actions.append(.greeting(condition))
        case .continuation:
            receiveContinuation(into: &actions)
        case .tagged(let response):
            guard let index = inFlight.firstIndex(where: { $0.tag == response.tag }) else {
                actions.append(.protocolViolation("tagged response for unknown tag \(response.tag)"))
                break
            }
            let command = inFlight.remove(at: index)
            if let head = sendQueue.first, head.id == command.id, head.state == .streamingBody {
                // An early answer (Dovecot's NO [LIMIT] to an APPEND) does not
                // end a literal already announced: it is written to its last
                // byte, or the next command would be read as message data.
                sendQueue[0].answered = true
            } else if let head = sendQueue.first, head.id == command.id {
                // Completed while still at the head: either it was blocking the queue on
                // purpose, or the server refused a literal with NO instead of `+`.
                sendQueue.removeFirst()
                if command.role.pausesWritesAfterCompletion && response.status == .ok { writesPaused = true }
            } else if let queued = sendQueue.firstIndex(where: { $0.id == command.id }) {
                sendQueue.remove(at: queued)
            }
            actions.append(.completed(command.id, response))
            pump(into: &actions)
        case .untagged(let response):
            if case .condition(let condition) = response, condition.status == .bye {
                actions.append(.bye(condition))
            } else {
                let owner = inFlight.first { $0.role.accepts(response) }?.id
                actions.append(.untagged(owner, response))
            }
        case .fetch(let fetchEvent):
            routeFetch(fetchEvent, into: &actions)
        }
        return actions
    }

    private mutating func receiveContinuation(into actions: inout [Action]) {
        guard !sendQueue.isEmpty else {
            actions.append(.protocolViolation("unexpected continuation request with no command waiting"))
            return
        }
        switch sendQueue[0].state {
        case .waitingForContinuation:
            sendQueue[0].state = .ready
            pump(into: &actions)
        case .idling(entered: false, let doneRequested):
            let id = sendQueue[0].id
            actions.append(.idleStarted(id))
            if doneRequested {
                actions.append(.write(Self.doneLine))
                sendQueue.removeFirst()
                pump(into: &actions)
            } else {
                sendQueue[0].state = .idling(entered: true, doneRequested: false)
            }
        case .awaitingTagged where sendQueue[0].role == .authenticate:
            // A SASL challenge after our response is an error report (XOAUTH2 sends a
            // JSON blob); answering with an empty line makes the server send the tagged NO.
            actions.append(.write(ByteBuffer(string: "\r\n")))
        default:
            actions.append(.protocolViolation("unexpected continuation request"))
        }
    }

    private mutating func routeFetch(_ event: FetchEvent, into actions: inout [Action]) {
        switch (fetchOwner, event) {
        case (nil, .start):
            fetchOwner = .undetermined(buffered: [event])
        case (nil, _):
            actions.append(.protocolViolation("FETCH data outside a FETCH response"))
        case (.undetermined(var buffered), .attribute(.uid(let uid))):
            buffered.append(event)
            // QRESYNC SELECT reports changed messages as FETCH responses of the SELECT.
            let owner = inFlight.first { $0.role.fetchUIDs?.contains(uid) == true }?.id
                ?? inFlight.first { $0.role == .select }?.id
            fetchOwner = .owner(owner)
            actions.append(contentsOf: buffered.map { .fetch(owner, $0) })
        case (.undetermined(var buffered), .bodyBegin):
            // A body before the UID item: servers answer pipelined commands in order,
            // so the oldest outstanding UID FETCH is the one asking.
            buffered.append(event)
            let owner = inFlight.first { if case .fetch = $0.role { return true } else { return false } }?.id
            fetchOwner = .owner(owner)
            actions.append(contentsOf: buffered.map { .fetch(owner, $0) })
        case (.undetermined(var buffered), .finish):
            buffered.append(event)
            fetchOwner = nil
            actions.append(contentsOf: buffered.map { .fetch(nil, $0) })
        case (.undetermined(var buffered), _):
            buffered.append(event)
            fetchOwner = .undetermined(buffered: buffered)
        case (.owner(let owner), _):
            actions.append(.fetch(owner, event))
            if case .finish = event { fetchOwner = nil }
        }
    }

    private mutating func pump(into actions: inout [Action]) {
        while !writesPaused, !sendQueue.isEmpty {
            switch sendQueue[0].state {
            case .ready: break
            default: return
            }
            if sendQueue[0].answered, case .waitForContinuation? = sendQueue[0].chunks.first {
                // The server will not ask for the rest of an answered command.
                sendQueue.removeFirst()
                continue
            }
            guard let chunk = sendQueue[0].chunks.popFirst() else {
                if sendQueue[0].answered {
                    sendQueue.removeFirst()
                    continue
                }
                if sendQueue[0].role == .idle {
                    sendQueue[0].state = .idling(entered: false, doneRequested: false)
                    return
                }
                if sendQueue[0].role.blocksQueueUntilTagged {
                    sendQueue[0].state = .awaitingTagged
                    return
                }
                sendQueue.removeFirst()
                continue
            }
            switch chunk {
            case .bytes(let buffer):
                actions.append(.write(buffer))
            case .waitForContinuation:
                sendQueue[0].state = .waitingForContinuation
            case .appendBody(let index, let size):
                sendQueue[0].state = .streamingBody
                actions.append(.streamAppendBody(sendQueue[0].id, index: index, size: size))
            }
        }
    }
}
