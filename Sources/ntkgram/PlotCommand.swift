import ArgumentParser
import Foundation
import GramPlot

struct PlotCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "plot",
    abstract: "Draw the learning curves of a `ntkgram dynamics` file as a PNG (no Python needed).",
    discussion: """
      Loss (log axis) and, for classes, accuracy of the training and test sets against training time (log axis), \
      one colour per set and ridge value, the t = inf values as dashed levels. For more pictures (the spectrum) \
      and matplotlib's styling: ntkgram-plot.
      """)

  @Argument(help: "A file written by `ntkgram dynamics`.") var dynamicsFile: String
  @Option(help: "The picture to write (.png).") var out: String
  @Option(parsing: .unconditional, help: "Width in pixels (400 to 8000).") var width: Int = 1400
  @Option(parsing: .unconditional, help: "Height in pixels (200 to 8000).") var height: Int = 560
  @Flag(help: "Replace an existing picture.") var force = false

  func run() throws {
    guard (400...8000).contains(width) else { throw CommandError("--width must be between 400 and 8000 pixels (got \(width))") }
    guard (200...8000).contains(height) else { throw CommandError("--height must be between 200 and 8000 pixels (got \(height))") }
    var plot = LearningCurvePlot(dynamicsFile: dynamicsFile, out: out, force: force)
    (plot.width, plot.height) = (width, height)
    try plot.run()
    print("wrote \(out)")
  }
}
