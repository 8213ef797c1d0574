/** The package ships JavaScript only; samlify.setSchemaValidator takes an object with this one function. */
declare module '@authenio/samlify-xmllint-wasm' {
  export function validate(xml: string): Promise<string>;
}
