using System.Management.Automation;
using OrasStaging.Commands.Completion;
using OrasStaging.DiskImages;
using OrasStaging.Oci;
using OrasStaging.Staging;

namespace OrasStaging.Commands;

/// <summary>
/// Stages a VM disk image from an oras:// artifact in one streaming pass, skipped by digest. Resolves the reference,
/// streams the layer blob through the digest check and the decoder straight into the target format (qcow2 by default;
/// raw, fixed VHD… from the extension or -Format), and commits it atomically with the cijoe stamp &lt;Path&gt;.digest
/// and the receipt &lt;Path&gt;.oras.json.
/// </summary>
[Cmdlet(VerbsLifecycle.Install, "DiskImageFromOras", DefaultParameterSetName = ReferenceSet,
    SupportsShouldProcess = true, HelpUri = "https://github.com/safl/OrasStaging#install-diskimagefromoras")]
[OutputType(typeof(StagedImage))]
public sealed partial class InstallDiskImageFromOrasCommand : RegistryCmdletBase
{
    private const string ReferenceSet = "Reference";
    private const string ConfigSet = "Config";
    private const int OverallActivityId = 1;
    private const int ImageActivityId = 2;

    private int _pipelineCount;
    private readonly List<StagedImage> _staged = new();

    /// <summary>oras://host[:port]/name:tag, @sha256:&lt;manifest digest&gt; or @sha256:&lt;layer blob digest&gt;.</summary>
    [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true, ParameterSetName = ReferenceSet)]
    [Alias("Url")]
    [ValidateNotNullOrEmpty]
    [ArgumentCompleter(typeof(ReferenceCompleter))]
    public string Reference { get; set; } = string.Empty;

    /// <summary>The image file to write. Its extension picks the format unless -Format says otherwise.</summary>
    [Parameter(Mandatory = true, Position = 1, ValueFromPipelineByPropertyName = true, ParameterSetName = ReferenceSet)]
    [Alias("DestinationPath")]
    [ValidateNotNullOrEmpty]
    public string Path { get; set; } = string.Empty;

    /// <summary>A name for the image, carried to the output (as the cijoe config's entry name is).</summary>
    [Parameter(ValueFromPipelineByPropertyName = true, ParameterSetName = ReferenceSet)]
    public string? Name { get; set; }

    /// <summary>A cijoe config: its [system-imaging.images.&lt;name&gt;] entries with oras.url and disk.path.</summary>
    [Parameter(Mandatory = true, ParameterSetName = ConfigSet)]
    [ValidateNotNullOrEmpty]
    public string ConfigPath { get; set; } = string.Empty;

    /// <summary>Wildcards on the config's image names, case-insensitive; only matching images are staged.</summary>
    [Parameter(ParameterSetName = ConfigSet)]
    public string[]? Include { get; set; }

    /// <summary>Wildcards on the config's image names, case-insensitive; matching images are left out.</summary>
    [Parameter(ParameterSetName = ConfigSet)]
    public string[]? Exclude { get; set; }

    /// <summary>qcow2, raw or (fixed) vhd; by default from the extension of -Path, else qcow2.</summary>
    [Parameter]
    public DiskImageFormat? Format { get; set; }

    /// <summary>Bytes added to the virtual size (e.g. 8GB, as the seed's qemu-img resize +8G did).</summary>
    [Parameter]
    [ValidateRange(0, long.MaxValue)]
    public long GrowBy { get; set; }

    /// <summary>The virtual size of the image, when it must be larger than the source.</summary>
    [Parameter]
    [ValidateRange(1, long.MaxValue)]
    public long? Size { get; set; }

    /// <summary>A qcow2 layer to a qcow2 target: write a new image through the reader instead of copying it as is.</summary>
    [Parameter]
    public SwitchParameter Reencode { get; set; }

    /// <summary>os/arch[/variant] to choose from an index.</summary>
    [Parameter]
    [ArgumentCompleter(typeof(PlatformCompleter))]
    public string? Platform { get; set; }

    /// <summary>A wildcard on the layer's title, when the manifest has several candidate layers.</summary>
    [Parameter]
    [SupportsWildcards]
    public string? LayerTitle { get; set; }

    /// <summary>The disk type to take from an index with one disk per type (podman: qemu, applehv, hyperv; CoreOS: qemu, metal, azure…); by default the one -Format or the extension asks for.</summary>
    [Parameter]
    [ArgumentCompleter(typeof(DiskTypeCompleter))]
    public string? DiskType { get; set; }

    /// <summary>The io.kubevirt.disk.name of the disk to take from a KubeVirt disk artifact that holds several.</summary>
    [Parameter]
    [ArgumentCompleter(typeof(DiskNameCompleter))]
    public string? DiskName { get; set; }

    /// <summary>A withcache server (default $WITHCACHE_SERVER); an empty string turns the cache off.</summary>
    [Parameter]
    [AllowEmptyString]
    public string? CacheServer { get; set; }

    /// <summary>Connections per blob above 16 MiB when the server honours Range; 1 fetches on one connection.</summary>
    [Parameter]
    [ValidateRange(1, 16)]
    public int ConnectionLimit { get; set; } = 4;

    /// <summary>A folder where the verified compressed blob is kept by digest, and reused when it is there.</summary>
    [Parameter]
    public string? KeepBlob { get; set; }

    /// <summary>Re-stage even when the stamp says the image is current.</summary>
    [Parameter]
    public SwitchParameter Force { get; set; }

    /// <summary>How long to wait for another process staging the same target.</summary>
    [Parameter]
    [ValidateRange(0, int.MaxValue)]
    public int TimeoutSec { get; set; } = 3600;

    protected override void ProcessRecord()
    {
        if (ParameterSetName == ConfigSet)
        {
            IReadOnlyList<ConfigImage> images;
            try
            {
                string config = ResolveOutputPath(ConfigPath);
                images = RunBlocking((sink, _) => Task.FromResult(CijoeConfig.Read(config, Include, Exclude, sink)));
            }
            catch (Exception ex) when (IsItemFailure(ex))
            {
                // Without a readable config there is nothing to stage: terminating, but always with a stable id.
                ThrowMappedError(ex, ConfigPath);
                return;
            }

            if (images.Count == 0)
            {
                WriteVerbose($"No image in '{ConfigPath}' has an oras source and matches the filters.");
            }

            for (int i = 0; i < images.Count; i++)
            {
                if (images.Count > 1)
                {
                    WriteProgress(new ProgressRecord(OverallActivityId, "Installing disk images",
                        $"{i + 1} of {images.Count}: {images[i].Name}") { PercentComplete = i * 100 / images.Count });
                }

                StageOne(images[i].Name, images[i].Reference, images[i].Path, images.Count > 1 ? OverallActivityId : -1);
            }

            if (images.Count > 1)
            {
                WriteProgress(new ProgressRecord(OverallActivityId, "Installing disk images", "Done")
                    { RecordType = ProgressRecordType.Completed });
            }

            return;
        }

        if (!MyInvocation.ExpectingInput)
        {
            StageOne(Name ?? string.Empty, Reference, Path, -1);
            return;
        }

        // Pipeline input: the total is unknown until the input ends, so the overall bar counts without a
        // percentage, and each image's bar sits under it as with -ConfigPath.
        _pipelineCount++;
        WriteProgress(new ProgressRecord(OverallActivityId, "Installing disk images",
            $"Image {_pipelineCount}: {(string.IsNullOrEmpty(Name) ? Reference : Name)}"));
        StageOne(Name ?? string.Empty, Reference, Path, OverallActivityId);
    }

    protected override void EndProcessing()
    {
        GitHub.Summary(_staged, WriteWarning);
        if (_pipelineCount > 0)
        {
            WriteProgress(new ProgressRecord(OverallActivityId, "Installing disk images", $"Done: {_pipelineCount} image(s)")
                { RecordType = ProgressRecordType.Completed });
        }
    }

    private void StageOne(string name, string reference, string path, int parentActivityId)
    {
        string target = name.Length > 0 ? name : reference;
        try
        {
            var parsed = ImageReference.Parse(reference);
            string fullPath = DevicePath(path) ?? ResolveOutputPath(path);
            if (Devices.DeviceFlash.IsDevice(fullPath))
            {
                StageOntoDevice(name, reference, parsed, fullPath, parentActivityId); // InstallDiskImageFromOrasCommand.Device.cs
                return;
            }

            var writer = DiskImageStagingWriter.ForTarget(fullPath, Format, GrowBy, Size, Reencode);
            string format = writer.Format.Name();

            var request = new InstallRequest
            {
                Name = name,
                Reference = reference,
                PinnedDigest = parsed.Digest,
                Path = fullPath,
                Force = Force,
                KeepBlob = KeepBlob is null ? null : ResolveOutputPath(KeepBlob),
                LockTimeout = TimeSpan.FromSeconds(TimeoutSec),
            };

            var registryOptions = NewRegistryOptions(CacheServer);
            registryOptions.ConnectionLimit = ConnectionLimit;
            var resolveOptions = NewResolveOptions();
            resolveOptions.TargetFormat = writer.Format;
            async Task<T> WithFlow<T>(IOperationSink sink, Func<InstallFlow, Task<T>> work)
            {
                var source = new RegistryStagingSource(registryOptions, parsed, resolveOptions, sink);
                return await work(new InstallFlow(source, writer, sink)).ConfigureAwait(false);
            }

            bool whatIf = MyInvocation.BoundParameters.TryGetValue("WhatIf", out var w) && w is SwitchParameter { IsPresent: true };
            string description = whatIf
                ? RunBlocking((sink, ct) => WithFlow(sink, flow => flow.DescribeAsync(request, ct)), ImageActivityId, parentActivityId)
                : $"Install {reference} as {format} to '{fullPath}'";
            if (!ShouldProcess(description, $"Install {reference} as {format} to '{fullPath}'?", "Install-DiskImageFromOras"))
            {
                return;
            }

            StagedImage result;
            using (GitHub.Group($"Install {reference} to {fullPath}"))
            {
                result = RunBlocking((sink, ct) => WithFlow(sink, flow => flow.RunAsync(request, ct)), ImageActivityId, parentActivityId);
            }

            _staged.Add(result);
            WriteObject(result);
        }
        catch (Exception ex) when (IsItemFailure(ex))
        {
            // One image failing does not stop the others.
            WriteMappedError(ex, target);
        }
    }

    private ResolveOptions NewResolveOptions() => new()
    {
        Platform = Platform,
        LayerTitle = LayerTitle,
        DiskType = DiskType,
        DiskName = DiskName,
    };
}
