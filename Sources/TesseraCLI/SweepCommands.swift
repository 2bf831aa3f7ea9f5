import ArgumentParser
import Foundation
import Tessera

struct SweepCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sweep",
        abstract: "Run every cell of a grid of config overrides (finished cells are skipped), then print the results table.",
        discussion: """
            A grid file names a base config (relative to the grid file) and lists values for dotted config keys; \
            every combination is one run:

              base: ../pretrain/FMNIST_ViT-T_MAE_quick.yaml
              name: fmnist_mask_ratio    # optional, default: the grid file's stem
              output_dir: runs           # optional, default: the base config's
              grid:
                model.mask_ratio: [0.5, 0.75, 0.9]
                optim.blr: [1.5e-4, 3e-4]

            Runs go to <output_dir>/<name>/<key>=<value>,... and every cell is validated before the first one runs.
            """)

    @Argument(help: "The grid file (YAML).")
    var grid: String

    @Flag(help: "List the cells and their overrides without running anything.")
    var dryRun = false

    func run() throws {
        let sweep: Sweep
        do { sweep = try Sweep.load(gridPath: grid) } catch { fail(error) }
        if dryRun {
            print("\(sweep.cells.count) cells over \(sweep.basePath), runs under \(sweep.root)")
            for cell in sweep.cells {
                print("\(cell.isFinished ? "finished" : "to run  ")  \(cell.name)  " + cell.gridOverrides.map { "--set \($0)" }.joined(separator: " "))
            }
            return
        }
        print("sweep \(sweep.prefix): \(sweep.cells.count) cells over \(sweep.basePath), runs under \(sweep.root)")
        let report: Sweep.Report
        do { report = try sweep.run(echo: true) } catch { fail(error) }
        print("")
        do { print(try ResultsTable.markdown(root: sweep.root), terminator: "") } catch { fail(error) }
        print("\nran \(report.ran.count), skipped \(report.skipped.count) (finished), failed \(report.failed.count)")
        if !report.failed.isEmpty {
            fail(TrainingError(description: "tessera: sweep \(sweep.prefix): \(report.failed.count) of \(sweep.cells.count) cells failed: "
                               + report.failed.map(\.name).joined(separator: ", ")))
        }
    }
}

struct TableCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "table",
        abstract: "Print a markdown table of the finished runs (directories with summary.json) under a directory.")

    @Argument(help: "The directory to search, e.g. runs or runs/fmnist_mask_ratio.")
    var dir: String

    func run() throws {
        do { print(try ResultsTable.markdown(root: dir), terminator: "") } catch { fail(error) }
    }
}
