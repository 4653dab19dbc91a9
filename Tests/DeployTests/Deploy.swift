import Foundation
import TestSupport

/// The tools the deploy tests run come from Debian (or PyPI) packages scripts/test installs: a missing
/// one fails the test, never skips it.
enum Deploy {
    static func require(_ tool: URL, package: String) throws {
        guard FileManager.default.isExecutableFile(atPath: tool.path) else {
            throw KernelTestError("\(tool.path) is missing: install \(package) (scripts/test does)")
        }
    }
}
