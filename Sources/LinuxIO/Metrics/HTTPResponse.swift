/// What the metrics endpoint answers, as bytes ready to write. Every response closes the
/// connection: a scrape every few seconds does not need keep-alive, and closing keeps the
/// per-connection state to "read one head, write one response".
public enum MetricsHTTPResponse {
    /// The Prometheus text exposition format, version 0.0.4.
    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    /// Routes one request: `GET|HEAD /metrics` gets the exposition, other paths 404, other
    /// methods 405. `body` is only called for a successful scrape.
    public static func answer(_ head: HTTPRequestHead, body: () -> [UInt8]) -> (status: Int, bytes: [UInt8]) {
        guard head.method == "GET" || head.method == "HEAD" else {
            return (405, make(status: 405, extraHeaders: ["Allow: GET, HEAD"],
                              body: Array("method \(head.method) is not allowed; use GET /metrics\n".utf8)))
        }
        guard head.path == "/metrics" else {
            return (404, make(status: 404, body: Array("not found; metrics are at /metrics\n".utf8), headOnly: head.method == "HEAD"))
        }
        return (200, make(status: 200, contentType: contentType, body: body(), headOnly: head.method == "HEAD"))
    }

    /// An error answer for a request that could not be parsed (or came too slowly).
    public static func error(status: Int, reason: String) -> [UInt8] {
        make(status: status, body: Array("\(reason)\n".utf8))
    }

    public static func make(status: Int, contentType: String = "text/plain; charset=utf-8", extraHeaders: [String] = [],
                            body: [UInt8], headOnly: Bool = false) -> [UInt8] {
        var head = "HTTP/1.1 \(status) \(reasonPhrase(status))\r\n"
        head += "Content-Type: \(contentType)\r\n"
        head += "Content-Length: \(body.count)\r\n"
        for header in extraHeaders { head += header + "\r\n" }
        head += "Connection: close\r\n\r\n"
        return Array(head.utf8) + (headOnly ? [] : body)
    }

    static func reasonPhrase(_ status: Int) -> String {
        switch status {
        case 200: "OK"
        case 400: "Bad Request"
        case 404: "Not Found"
        case 405: "Method Not Allowed"
        case 408: "Request Timeout"
        case 431: "Request Header Fields Too Large"
        case 503: "Service Unavailable"
        case 505: "HTTP Version Not Supported"
        default: "Error"
        }
    }
}
