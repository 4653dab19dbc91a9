import PoolSpec

#if canImport(Glibc)
import Glibc
#endif

/// libFuzzer's entry: spec bytes through the whole decoder, the same path as `validate -` (YAML or JSON,
/// chosen by the first character). The invariant: a Spec, or SpecErrors whose every error is one line
/// `path: message`; anything else (a crash, an empty list, a malformed line) aborts, which libFuzzer
/// reports with the input. Built by scripts/fuzz-spec with -sanitize=fuzzer and -DSPECFUZZ_LIBFUZZER.
@_cdecl("LLVMFuzzerTestOneInput")
public func specFuzzTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
    do {
        _ = try SpecDecoder.decode(bytes)
    } catch {
        if error.errors.isEmpty { violated("SpecErrors with no error") }
        for e in error.errors where !wellFormed(e) { violated("malformed error line: \(e.description)") }
    }
    return 0
}

/// One line, a non-empty path that reads as one (`spec`, `pools[0].backends[2].address`, a quoted key),
/// then ": " and a non-empty message; at most 1,000 characters (spec text is elided, never echoed whole).
func wellFormed(_ e: SpecError) -> Bool {
    isPath(e.path) && !e.message.isEmpty && !e.description.contains(where: \.isNewline) && e.description.count <= 1000
}

/// segment ( "." segment | "[" digits "]" )*, where a segment is a plain name or a "quoted" key.
func isPath(_ path: String) -> Bool {
    var rest = Substring(path)
    func segment() -> Bool {
        if rest.first == "\"" {
            guard let close = rest.dropFirst().lastIndex(of: "\"") else { return false }
            rest = rest[rest.index(after: close)...]
            return true
        }
        let name = rest.prefix { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == "-") }
        rest = rest.dropFirst(name.count)
        return !name.isEmpty
    }
    guard segment() else { return false }
    while let c = rest.first {
        rest = rest.dropFirst()
        if c == "." {
            guard segment() else { return false }
        } else if c == "[" {
            let digits = rest.prefix { $0.isASCII && $0.isNumber }
            rest = rest.dropFirst(digits.count)
            guard !digits.isEmpty, rest.first == "]" else { return false }
            rest = rest.dropFirst()
        } else {
            return false
        }
    }
    return true
}

func violated(_ what: String) -> Never {
    let line = Array("SpecFuzz invariant violated: \(what)\n".utf8)
    _ = write(2, line, line.count)  // unbuffered: abort() follows
    abort()
}

#if SPECFUZZ_LIBFUZZER
/// libFuzzer's own entry (LLVM 11 and later). SwiftPM names an executable's `main` after the module, so
/// libFuzzer's `main` is never linked in: this one hands the arguments (-max_total_time, corpus
/// directories) to libFuzzer instead.
@_silgen_name("LLVMFuzzerRunDriver")
private func runLibFuzzer(
    _ argc: UnsafeMutablePointer<CInt>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ test: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
) -> CInt

@main enum SpecFuzz {
    static func main() {
        var argc = CommandLine.argc
        var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
        exit(runLibFuzzer(&argc, &argv, specFuzzTestOneInput))
    }
}
#else
/// Without libFuzzer (a plain `swift build`) the target still builds: it runs the files it is given
/// through the same check, so an input libFuzzer saved can be replayed without the sanitizer build.
@main enum SpecFuzzReplay {
    static func main() {
        for path in CommandLine.arguments.dropFirst() {
            guard let f = fopen(path, "rb") else { violated("cannot open \(path)") }
            var bytes: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 65536)
            while case let n = fread(&buffer, 1, buffer.count, f), n > 0 { bytes += buffer[0..<n] }
            fclose(f)
            _ = bytes.withUnsafeBufferPointer { specFuzzTestOneInput($0.baseAddress, $0.count) }
            print("\(path): ok")
        }
    }
}
#endif
