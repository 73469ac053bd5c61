namespace OrasStaging.Oci;

/// <summary>
/// The file name a blob is saved under when only a folder is given: the layer's title annotation
/// (org.opencontainers.image.title), or the digest's hex with <c>.blob</c> when there is no title.
/// </summary>
internal static class BlobFileName
{
    /// <summary>
    /// The name for <paramref name="image"/>'s blob. A title is the registry's text, not the user's, so one
    /// that could leave the folder or cannot be a file name (separators, <c>..</c>, a drive, invalid characters;
    /// see <see cref="Selection.SafeFileName"/>) fails with <see cref="ErrorCode.InvalidTitle"/>.
    /// </summary>
    public static string For(OrasImage image)
    {
        if (image.Title is null)
        {
            return Digest.Split(image.Digest).Hex + ".blob";
        }

        return Selection.SafeFileName(image.Title) ?? throw new OrasStagingException(ErrorCode.InvalidTitle,
            $"The layer title '{image.Title}' cannot be used as a file name (separators, '..', a drive or invalid characters).",
            "Give -DestinationPath a file path to choose the name yourself.");
    }
}
