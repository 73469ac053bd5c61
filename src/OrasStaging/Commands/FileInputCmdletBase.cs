using System.Management.Automation;
using OrasStaging.DiskImages;
using OrasStaging.IO;

namespace OrasStaging.Commands;

/// <summary>
/// The cmdlets that turn each input image file into one output file (Expand-DiskImage, Convert-DiskImage):
/// wildcard -Path, -LiteralPath that binds a file object's PSPath from the pipeline, -Force, and the one per-file
/// loop, so both bind, ask, write and report alike.
/// </summary>
public abstract class FileInputCmdletBase : OrasCmdletBase
{
    protected const string PathSet = "Path";
    protected const string LiteralPathSet = "LiteralPath";

    /// <summary>Files to read; wildcards are expanded.</summary>
    [Parameter(Mandatory = true, Position = 0, ParameterSetName = PathSet, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
    [SupportsWildcards]
    [ValidateNotNullOrEmpty]
    public string[] Path { get; set; } = Array.Empty<string>();

    /// <summary>Files to read, taken as written (names with [ ] stay literal).</summary>
    [Parameter(Mandatory = true, ParameterSetName = LiteralPathSet, ValueFromPipelineByPropertyName = true)]
    [Alias("PSPath", "LP")]
    [ValidateNotNullOrEmpty]
    public string[] LiteralPath { get; set; } = Array.Empty<string>();

    /// <summary>Replace an existing destination file.</summary>
    [Parameter]
    public SwitchParameter Force { get; set; }

    /// <summary>What one input becomes: the destination, the ShouldProcess action, and the write into a temporary path.</summary>
    private protected sealed record FileJob(
        string Destination,
        string Action,
        Func<string, IOperationSink, CancellationToken, Task<DiskWriteResult>> Write);

    /// <summary>
    /// Plans the job for one resolved input file; a failure here (no output name, a bad option) is reported for
    /// that input and the next one runs.
    /// </summary>
    private protected abstract FileJob Plan(string input);

    /// <summary>
    /// Each input in turn: plan, refuse an unusable destination before asking, ask ShouldProcess, write through a
    /// temporary file that is renamed into place, and output the file. One input failing does not stop the rest.
    /// </summary>
    protected override void ProcessRecord()
    {
        bool literal = ParameterSetName == LiteralPathSet;
        foreach (string input in Paths.InputFiles(literal ? LiteralPath : Path, literal,
                     (error, path) => WriteError(ErrorMapping.ToErrorRecord(error, path))))
        {
            FileJob job;
            try
            {
                job = Plan(input);
                DestinationFile.CheckDestination(job.Destination, Force);
            }
            catch (Exception ex) when (IsItemFailure(ex))
            {
                WriteMappedError(ex, input);
                continue;
            }

            if (!ShouldProcess(job.Destination, job.Action))
            {
                continue;
            }

            try
            {
                RunBlocking((sink, ct) => DestinationFile.WriteAsync(job.Destination, Force,
                    temp => job.Write(temp, sink, ct)));
            }
            catch (Exception ex) when (IsItemFailure(ex))
            {
                WriteMappedError(ex, input);
                continue;
            }

            WriteObject(FileOutput(job.Destination));
        }
    }
}
