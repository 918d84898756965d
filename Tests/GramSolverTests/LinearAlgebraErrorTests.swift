import Testing
@testable import GramSolver

/// LAPACK's failures carry what went wrong (`LinearAlgebraError.Kind`), so that the commands can
/// name the file and the remedy instead of a routine and an info code.
@Suite struct LinearAlgebraErrorTests {
  @Test func aMatrixThatIsNotPositiveDefiniteSaysWhere() throws {
    // Leading minors 1 and −3: the Cholesky factorization fails at order 2.
    let a = DenseBlock(rows: 2, cols: 2, values: [1, 2, 2, 1])
    let b = DenseBlock(rows: 2, cols: 1, values: [1, 1])
    for call in [{ _ = try solveSPD(a, b) }, { _ = try choleskyUpper(a) }] {
      do { try call(); Issue.record("no error") } catch let e as LinearAlgebraError {
        #expect(e.kind == .notPositiveDefinite(order: 2))
        #expect(!e.description.contains("LAPACK") && !e.description.contains("info"))
      }
    }
  }

  @Test func nonFiniteInputIsRefusedBeforeLAPACK() throws {
    let a = DenseBlock(rows: 2, cols: 2, values: [1, .nan, .nan, 1])
    #expect(throws: LinearAlgebraError.self) { _ = try symmetricEigen(a) }
    do { _ = try symmetricEigen(a) } catch let e as LinearAlgebraError { #expect(e.kind == .notFinite) }
    do { _ = try solveSPD(DenseBlock(rows: 1, cols: 1, values: [.infinity]), DenseBlock(rows: 1, cols: 1, values: [1])) }
    catch let e as LinearAlgebraError { #expect(e.kind == .notFinite) }
  }

  @Test func emptyMatricesHaveEmptyAnswers() throws {
    // LAPACK rejects a leading dimension of 0 (dsyevd's info −5): an empty block is answered here.
    let (values, vectors) = try symmetricEigen(DenseBlock(rows: 0, cols: 0))
    #expect(values.isEmpty && vectors.values.isEmpty)
    #expect(try choleskyUpper(DenseBlock(rows: 0, cols: 0)).values.isEmpty)
    #expect(try solveSPD(DenseBlock(rows: 0, cols: 0), DenseBlock(rows: 0, cols: 3)).values.isEmpty)
  }

  @Test func positiveDefiniteSystemsAreSolvedAsBefore() throws {
    let a = DenseBlock(rows: 2, cols: 2, values: [4, 1, 1, 3])
    let x = try solveSPD(a, DenseBlock(rows: 2, cols: 1, values: [1, 2]))
    #expect(abs(x[0, 0] - 1.0 / 11) < 1e-15 && abs(x[1, 0] - 7.0 / 11) < 1e-15)
  }
}
