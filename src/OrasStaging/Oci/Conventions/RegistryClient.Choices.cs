using OrasStaging.Oci.Conventions;

namespace OrasStaging.Oci;

/// <summary>What an artifact offers to -DiskType and -DiskName (argument completion): manifest requests only.</summary>
public sealed partial class RegistryClient
{
    internal sealed record DiskChoices(IReadOnlyList<string> DiskTypes, IReadOnlyList<string> DiskNames);

    internal async Task<DiskChoices> ListDiskChoicesAsync(ImageReference reference, string? platform, string? diskType, CancellationToken ct)
    {
        var manifest = await FetchManifestAsync(reference, reference.Digest ?? reference.Tag!, reference.Digest, ct).ConfigureAwait(false);
        IReadOnlyList<string> types = Array.Empty<string>();
        if (manifest.MediaType is OciIndex or DockerList)
        {
            var entries = ParseIndex(manifest.Body);
            types = IndexChoice.DiskTypesOf(entries);
            IndexPick pick;
            try
            {
                pick = IndexChoice.Choose(entries, new ResolveOptions { Platform = platform, DiskType = diskType }, Selection.HostOs(), Selection.HostArchitecture(),
                    reference.ToString());
            }
            catch (OrasStagingException)
            {
                // Several types and none asked for: the disk names of the first entry are still worth offering.
                pick = new IndexPick(entries[0], null, null);
            }

            manifest = await FetchManifestAsync(reference, pick.Entry.Digest, pick.Entry.Digest, ct).ConfigureAwait(false);
            if (manifest.MediaType is OciIndex or DockerList)
            {
                return new DiskChoices(types, Array.Empty<string>());
            }
        }

        var (layers, _, _) = ParseManifest(manifest.Body, manifest.MediaType);
        return new DiskChoices(types, LayerChoice.DiskNamesOf(layers));
    }
}
