using System.Management.Automation;
using OrasStaging.Oci;

namespace OrasStaging.Commands;

/// <summary>
/// Resolves an oras:// reference to the layer blob that holds the disk image. Reads the manifest (choosing from an
/// index by platform), picks the layer, and reports its digest, size, title and registry URL. A pinned @sha256: may
/// name a manifest or the blob itself.
/// </summary>
[Cmdlet(VerbsDiagnostic.Resolve, "OrasImage", HelpUri = "https://github.com/safl/OrasStaging#resolve-orasimage")]
[OutputType(typeof(OrasImage))]
public sealed class ResolveOrasImageCommand : RegistryCmdletBase
{
    /// <summary>oras://host[:port]/name:tag, …@sha256:…, or the same without oras://.</summary>
    [Parameter(Mandatory = true, Position = 0, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
    [Alias("Url")]
    [ValidateNotNullOrEmpty]
    [ArgumentCompleter(typeof(Completion.ReferenceCompleter))]
    public string[] Reference { get; set; } = Array.Empty<string>();

    /// <summary>os/arch[/variant] to take from an index.</summary>
    [Parameter]
    [ArgumentCompleter(typeof(Completion.PlatformCompleter))]
    public string? Platform { get; set; }

    /// <summary>Wildcard on the layer title; overrides the automatic choice.</summary>
    [Parameter]
    [SupportsWildcards]
    public string? LayerTitle { get; set; }

    /// <summary>Wildcard on the layer media type; overrides the automatic choice.</summary>
    [Parameter]
    [SupportsWildcards]
    public string? LayerMediaType { get; set; }

    /// <summary>The disk type to take from an index with one disk per type (podman: qemu, applehv, hyperv; CoreOS: qemu, metal, azure…).</summary>
    [Parameter]
    [ArgumentCompleter(typeof(Completion.DiskTypeCompleter))]
    public string? DiskType { get; set; }

    /// <summary>The io.kubevirt.disk.name of the disk to take from a KubeVirt disk artifact that holds several.</summary>
    [Parameter]
    [ArgumentCompleter(typeof(Completion.DiskNameCompleter))]
    public string? DiskName { get; set; }

    protected override void ProcessRecord()
    {
        var options = NewRegistryOptions();
        var resolveOptions = new ResolveOptions
        {
            Platform = Platform, LayerTitle = LayerTitle, LayerMediaType = LayerMediaType, DiskType = DiskType, DiskName = DiskName,
        };
        ForEachResolved(Reference, options, resolveOptions, WriteObject);
    }
}
