import Foundation

/// One line for a person out of any error. Foundation's errors describe themselves as a dump
/// (`Error Domain=NSCocoaErrorDomain Code=512 "(null)" UserInfo={NSFilePath=…, NSUnderlyingError=…}`):
/// they become what failed on which file, in strerror's words (`cannot write /run/x: Not a directory`).
/// Our own errors already say what happened; any text is kept to one line.
enum ErrorText {
    static func line(_ error: any Error) -> String {
        let text: String
        if let posix = error as? POSIXError {
            text = String(cString: strerror(posix.code.rawValue))
        } else if error is CocoaError || Swift.type(of: error) is NSError.Type {
            text = foundation(error as NSError)
        } else {
            text = "\(error)"
        }
        return text.split(whereSeparator: \.isNewline).joined(separator: " ")
    }

    static func foundation(_ error: NSError) -> String {
        let path = error.userInfo[NSFilePathErrorKey] as? String ?? (error.userInfo[NSURLErrorKey] as? URL)?.path
        let underlying = (error.userInfo[NSUnderlyingErrorKey] as? any Error).map { $0 as NSError }
        let reason: String
        if let underlying, underlying.domain == NSPOSIXErrorDomain {
            reason = String(cString: strerror(Int32(underlying.code)))
        } else if error.domain == NSPOSIXErrorDomain {
            reason = String(cString: strerror(Int32(error.code)))
        } else {
            reason = error.localizedDescription
        }
        guard let path else { return reason }
        // NSFileReadErrorMinimum…NSFileWriteErrorMinimum-1 are reads, NSFileWriteErrorMinimum on writes.
        switch error.domain == NSCocoaErrorDomain ? error.code : 0 {
        case 256..<512: return "cannot read \(path): \(reason)"
        case 512..<768: return "cannot write \(path): \(reason)"
        default: return "\(path): \(reason)"
        }
    }
}
