import Foundation
import Testing
@testable import GramTransport

/// Runs `body` on `size` in-process ranks, one thread each, and returns their results.
func onRanks<T: Sendable>(_ size: Int, _ body: @escaping @Sendable (Communicator) throws -> T) throws -> [T] {
  let comms = LocalCommunicator.group(size: size)
  let lock = NSLock()
  nonisolated(unsafe) var results = [Result<T, Error>?](repeating: nil, count: size)
  let group = DispatchGroup()
  for comm in comms {
    group.enter()
    let box = UncheckedBox(comm)
    Thread.detachNewThread {
      let r = Result { try body(box.value) }
      lock.lock(); results[box.value.rank] = r; lock.unlock()
      group.leave()
    }
  }
  group.wait()
  return try results.map { try $0!.get() }
}

struct UncheckedBox<T>: @unchecked Sendable {
  let value: T
  init(_ value: T) { self.value = value }
}

@Suite("in-process communicator")
struct LocalCommunicatorTests {
  @Test("allReduce sum, max, min agree on every rank", arguments: [1, 2, 3, 5])
  func allReduce(size: Int) throws {
    let results = try onRanks(size) { comm -> [Double] in
      var s = [Double(comm.rank), 1, 0.1 * Double(comm.rank)]
      try comm.allReduce(&s, .sum)
      var mx = [Double(comm.rank)], mn = [Double(comm.rank)]
      try comm.allReduce(&mx, .max)
      try comm.allReduce(&mn, .min)
      return s + mx + mn
    }
    let expectedSum = Double(size * (size - 1) / 2)
    for r in results {
      #expect(r[0] == expectedSum && r[1] == Double(size) && r[3] == Double(size - 1) && r[4] == 0)
      #expect(r[2].bitPattern == results[0][2].bitPattern)
    }
  }

  @Test("allGather and broadcast")
  func gather() throws {
    let results = try onRanks(4) { comm -> ([[UInt8]], [UInt8]) in
      let all = try comm.allGather(Array(repeating: UInt8(comm.rank), count: comm.rank))
      let b = try comm.broadcast(comm.rank == 2 ? [7, 7] : [], root: 2)
      return (all, b)
    }
    for (all, b) in results {
      #expect(all == [[], [1], [2, 2], [3, 3, 3]])
      #expect(b == [7, 7])
    }
  }

  @Test("one rank's failure reaches every rank with its message")
  func collectiveFailure() throws {
    let results = try onRanks(3) { comm -> String in
      do {
        try comm.collectively { if comm.rank == 1 { throw TransportError("disk full on rank 1") } }
        return "no error"
      } catch let f as CollectiveFailure {
        return "\(f.rank):\(f.message):\(f.isLocal)"
      }
    }
    #expect(results == ["1:disk full on rank 1:false", "1:disk full on rank 1:true", "1:disk full on rank 1:false"])
  }

  struct BadValue: Error, CustomStringConvertible, InvalidValue { var description: String }

  @Test("an invalid value stays one (exit status 2) on every rank, with its message intact; other failures do not")
  func invalidValueThroughACollective() throws {
    for (failing, invalid) in [(0, true), (2, true), (1, false)] {
      let results = try onRanks(3) { comm -> String in
        do {
          try comm.collectively {
            guard comm.rank == failing else { return }
            if invalid { throw BadValue(description: "--layers: kernel.layers[0] (conv): no images") }
            throw TransportError("disk full")
          }
          return "no error"
        } catch let f as CollectiveFailure {
          return "\(f.rank):\(f.message):\(f.isInvalidValue)"
        }
      }
      let message = invalid ? "--layers: kernel.layers[0] (conv): no images" : "disk full"
      #expect(results == Array(repeating: "\(failing):\(message):\(invalid)", count: 3))
    }
  }
}
