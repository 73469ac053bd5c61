using System.Management.Automation;
using OrasStaging.Inventory;
using OrasStaging.Oci;

namespace OrasStaging.Commands;

/// <summary>
/// Lists what is staged where, from the stamps and receipts beside the images (<see cref="StagedInventory"/>).
/// With -CheckRemote each reference is resolved again (manifest requests only) to say whether its tag still
/// points at the staged image. Problems are part of the output (Problem, ProblemMessage), never filtered out.
/// </summary>
[Cmdlet(VerbsCommon.Get, "StagedDiskImage", HelpUri = "https://github.com/safl/OrasStaging#get-stageddiskimage")]
[OutputType(typeof(StagedDiskImageInfo))]
public sealed class GetStagedDiskImageCommand : OrasCmdletBase
{
    /// <summary>A folder, an image, or its .digest stamp or .oras.json receipt; default the current location.</summary>
    [Parameter(Position = 0, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
    [Alias("FullName")]
    [ValidateNotNullOrEmpty]
    public string[] Path { get; set; } = { "." };

    /// <summary>For a folder: its subfolders too.</summary>
    [Parameter]
    public SwitchParameter Recurse { get; set; }

    /// <summary>Resolve each reference at its registry and set Current.</summary>
    [Parameter]
    public SwitchParameter CheckRemote { get; set; }

    // One resolve per reference per invocation: a lab folder often holds the same tag many times.
    private readonly Dictionary<string, (OrasImage? Image, Exception? Failure)> _resolved = new(StringComparer.Ordinal);

    protected override void ProcessRecord()
    {
        foreach (string text in Path)
        {
            IReadOnlyList<StagedDiskImageInfo> found;
            try
            {
                found = StagedInventory.Find(ResolveOutputPath(text), Recurse.IsPresent);
            }
            catch (Exception ex) when (IsItemFailure(ex))
            {
                WriteMappedError(ex, text);
                continue;
            }

            foreach (var info in found)
            {
                if (info.Problem != StagedImageProblem.None)
                {
                    WriteVerbose($"{info.Path}: {info.Problem}: {info.ProblemMessage}");
                }

                if (CheckRemote.IsPresent)
                {
                    Check(info);
                }

                WriteObject(info);
            }
        }
    }

    /// <summary>
    /// Current is true when the reference still resolves to the staged manifest or layer digest (either: a receipt
    /// staged with -LayerTitle has the same manifest but maybe another default layer). A failure is written as an
    /// error against the image and Current stays null: unknown, not "stale".
    /// </summary>
    private void Check(StagedDiskImageInfo info)
    {
        if (info.Reference is null || info.Digest is null)
        {
            WriteVerbose($"{info.Path}: no reference recorded (a stamp alone), so -CheckRemote cannot check it.");
            return;
        }

        if (!_resolved.TryGetValue(info.Reference, out var result))
        {
            try
            {
                var reference = ImageReference.Parse(info.Reference);
                result = (RunBlocking((sink, ct) => new RegistryClient(new RegistryOptions(), sink).ResolveAsync(reference, new ResolveOptions { ManifestsOnly = true }, ct)), null);
            }
            catch (Exception ex) when (IsItemFailure(ex))
            {
                result = (null, ex);
            }

            _resolved[info.Reference] = result;
        }

        if (result.Failure is not null)
        {
            WriteMappedError(result.Failure, info.Path);
            return;
        }

        var image = result.Image!;
        info.Current = StagedCurrency.IsCurrent(info, image);
        WriteVerbose($"{info.Path}: {info.Reference} now resolves to {image.Digest}; {(info.Current == true ? "current" : "stale")}.");
    }
}
