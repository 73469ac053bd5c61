using System.Management.Automation;
using OrasStaging.Oci;

namespace OrasStaging.Commands;

/// <summary>
/// Downloads a layer blob, verified and resumable, to a file. Writes &lt;name&gt;.partial, resumes it after an
/// interruption (even in a new process), checks size and digest, and renames it only then. A file that already holds
/// the digest is skipped.
/// </summary>
[Cmdlet(VerbsData.Save, "OrasBlob", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Low,
    DefaultParameterSetName = InputObjectSet, HelpUri = "https://github.com/safl/OrasStaging#save-orasblob")]
[OutputType(typeof(FileInfo))]
public sealed class SaveOrasBlobCommand : RegistryCmdletBase
{
    private const string InputObjectSet = "InputObject";
    private const string ReferenceSet = "Reference";

    /// <summary>What Resolve-OrasImage returned.</summary>
    [Parameter(Mandatory = true, ValueFromPipeline = true, ParameterSetName = InputObjectSet)]
    public OrasImage[] InputObject { get; set; } = Array.Empty<OrasImage>();

    /// <summary>An oras:// reference, resolved first.</summary>
    [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true, ParameterSetName = ReferenceSet)]
    [Alias("Url")]
    [ValidateNotNullOrEmpty]
    [ArgumentCompleter(typeof(Completion.ReferenceCompleter))]
    public string[] Reference { get; set; } = Array.Empty<string>();

    /// <summary>A folder (the file is named after the layer title) or a file path. Default: the current location.</summary>
    [Parameter(Position = 1)]
    [Alias("Destination")]
    public string? DestinationPath { get; set; }

    /// <summary>Replace an existing file that holds something else.</summary>
    [Parameter]
    public SwitchParameter Force { get; set; }

    [Parameter(ParameterSetName = ReferenceSet)]
    [ArgumentCompleter(typeof(Completion.PlatformCompleter))]
    public string? Platform { get; set; }

    [Parameter(ParameterSetName = ReferenceSet)]
    [SupportsWildcards]
    public string? LayerTitle { get; set; }

    [Parameter(ParameterSetName = ReferenceSet)]
    [SupportsWildcards]
    public string? LayerMediaType { get; set; }

    /// <summary>The disk type to take from an index with one disk per type (podman: qemu, applehv, hyperv; CoreOS: qemu, metal, azure…).</summary>
    [Parameter(ParameterSetName = ReferenceSet)]
    [ArgumentCompleter(typeof(Completion.DiskTypeCompleter))]
    public string? DiskType { get; set; }

    /// <summary>The io.kubevirt.disk.name of the disk to take from a KubeVirt disk artifact that holds several.</summary>
    [Parameter(ParameterSetName = ReferenceSet)]
    [ArgumentCompleter(typeof(Completion.DiskNameCompleter))]
    public string? DiskName { get; set; }

    /// <summary>A withcache server (default $WITHCACHE_SERVER); an empty string turns the cache off.</summary>
    [Parameter]
    [AllowEmptyString]
    public string? CacheServer { get; set; }

    /// <summary>Connections per blob above 16 MiB when the server honours Range; 1 fetches on one connection.</summary>
    [Parameter]
    [ValidateRange(1, 16)]
    public int ConnectionLimit { get; set; } = 4;

    protected override void ProcessRecord()
    {
        var options = NewRegistryOptions(CacheServer);
        options.ConnectionLimit = ConnectionLimit;
        if (ParameterSetName == ReferenceSet)
        {
            var resolveOptions = new ResolveOptions
            {
                Platform = Platform, LayerTitle = LayerTitle, LayerMediaType = LayerMediaType, DiskType = DiskType, DiskName = DiskName,
            };
            ForEachResolved(Reference, options, resolveOptions, image => Save(image, options));
            return;
        }

        foreach (var image in InputObject)
        {
            try
            {
                Save(image, options);
            }
            catch (Exception ex) when (IsItemFailure(ex))
            {
                WriteMappedError(ex, image);
            }
        }
    }

    private void Save(OrasImage image, RegistryOptions options)
    {
        string destination = DestinationFile(image);
        if (!ShouldProcess(destination, $"Download {image.Digest} ({Units.Bytes(image.Size)}) from {image.Registry}/{image.Repository}"))
        {
            return;
        }

        var file = RunBlocking((sink, ct) => new RegistryClient(options, sink).DownloadBlobAsync(image, destination, Force.IsPresent, ct));
        WriteObject(FileOutput(file.FullName));
    }

    private string DestinationFile(OrasImage image)
    {
        string target = ResolveOutputPath(string.IsNullOrEmpty(DestinationPath) ? "." : DestinationPath);
        bool folder = Directory.Exists(target) || (DestinationPath is { } d && (d.EndsWith('/') || d.EndsWith('\\')));
        if (!folder)
        {
            return target;
        }

        return Path.Combine(target, BlobFileName.For(image));
    }
}
